"""Benchmark: staging and minimisation at Cardiff scale on SQLite (issue 4).

Times, on a fresh home each repeat: ``stage_delivery`` (encrypt every row, one transaction),
``load_staged`` (decrypt for matching), ``minimise`` (seal the retained set, delete, checkpoint,
destroy the data key), ``list_retained``, a retained-key rotation, then the same extract again as
a later delivery (``stage_again``, ``minimise_again``: every retained child is held already, so
the seal replaces each earlier record and the retained key is rotated). Input: the simulated
Cardiff extract (about 57,000 children); outcomes are synthetic (94% matched, 2% possible,
4% unmatched) so the matcher's cost is not counted here. Prints every repeat, the median and
the process's peak memory. ``--keystore pkcs11`` keeps every key in a SoftHSM2 token made for
the run (issue 20: goal at most 1.5 times the ``file:`` figure). Usage::

    .venv/bin/python benchmarks/minimise.py [--repeats 3] [--children N] [--database-url URL]
                                            [--keystore file|pkcs11]
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cme_pipeline.config import load_settings
from cme_pipeline.home import close_homes, open_home
from cme_pipeline.la import minimise as m
from cme_pipeline.matching.convert import health_row_ids
from cme_pipeline.schemas import HEALTH_EXTRACT, MATCH_OUTCOME

LA = "W06000015"
DELIVERY = "D20261001-W06000015-bench000"
LATER = "D20270115-W06000015-bench001"
STEPS = ("stage", "load_staged", "minimise", "list_retained", "rotate", "stage_again", "minimise_again")


def _outcomes(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    bands = rng.choice(["matched", "possible", "unmatched"], size=n, p=[0.94, 0.02, 0.04])
    return pd.DataFrame({
        "health_record_id": health_row_ids(n), "outcome": bands,
        "register": np.where(bands == "unmatched", "", "school_census"),
        "register_record_id": [f"UPN{i:08d}" if b != "unmatched" else "" for i, b in enumerate(bands)],
        "probability": np.where(bands == "matched", 0.99, np.where(bands == "possible", 0.7, 0.1)),
    })[list(MATCH_OUTCOME)]


def _pkcs11_token(tmp: Path) -> str:
    """A fresh SoftHSM2 token for the run (the tests' own helper makes it)."""
    import os

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from softhsm import new_token

    (tmp / "tokens").mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read once, when the library is first loaded
    return new_token("bench")


def _one(extract: pd.DataFrame, outcomes: pd.DataFrame, database_url: str | None, keystore: str) -> dict[str, float]:
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {"CME_DATABASE_URL": database_url} if database_url else {}
        if keystore:
            env["CME_KEYSTORE"] = keystore
        settings = load_settings(Path(tmp) / "home", environ=env)
        for delivery in (DELIVERY, LATER):  # a shared PostgreSQL database: start clean
            m.discard_delivery(open_home(settings), LA, delivery)
        for step, call in (
            ("stage", lambda: m.stage_delivery(open_home(settings), LA, DELIVERY, extract)),
            ("load_staged", lambda: m.load_staged(open_home(settings), LA, DELIVERY)),
            ("minimise", lambda: m.minimise(open_home(settings), LA, DELIVERY, "bench", outcomes)),
            ("list_retained", lambda: m.list_retained(open_home(settings), LA)),
            ("rotate", lambda: m.rotate_retained_key(open_home(settings), LA)),
            ("stage_again", lambda: m.stage_delivery(open_home(settings), LA, LATER, extract)),
            ("minimise_again", lambda: m.minimise(open_home(settings), LA, LATER, "bench2", outcomes)),
        ):
            t0 = time.perf_counter()
            call()
            times[step] = time.perf_counter() - t0
        if len(m.list_retained(open_home(settings), LA)) != int(outcomes["outcome"].ne("matched").sum()):
            raise SystemExit("the later delivery left a child held twice")
        m.discard_delivery(open_home(settings), LA, DELIVERY)
        m.discard_delivery(open_home(settings), LA, LATER)
        close_homes()
    return times


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--children", type=int, default=None, help="default: Cardiff's realistic size")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--keystore", choices=("file", "pkcs11"), default="file")
    args = parser.parse_args()
    keystore = _pkcs11_token(Path(tempfile.mkdtemp(prefix="cme-bench-hsm-"))) if args.keystore == "pkcs11" else ""
    from cme_pipeline.simulate import simulate_la

    extract = simulate_la(LA, children=args.children, seed=1, year_start=2026).extract[list(HEALTH_EXTRACT)]
    outcomes = _outcomes(len(extract))
    out = sys.stdout
    out.write(f"{platform.machine()}, Python {platform.python_version()}, {len(extract)} records, "
              f"key store {args.keystore}\n")
    out.write("  ".join(f"{s:>13}" for s in (*STEPS, "total")) + "\n")
    runs = []
    for _ in range(args.repeats):
        runs.append(_one(extract, outcomes, args.database_url, keystore))
        runs[-1]["total"] = sum(runs[-1][s] for s in STEPS)
        out.write("  ".join(f"{runs[-1][s]:>12.2f}s" for s in (*STEPS, "total")) + "\n")
    out.write("  ".join(f"{statistics.median(r[s] for r in runs):>12.2f}s" for s in (*STEPS, "total")) + "  (median)\n")
    out.write(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB\n")


if __name__ == "__main__":
    main()
