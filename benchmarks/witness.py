"""Benchmark: the cost of the NHS partner's witness (issue 14) over 1,000 checkpoints of one ledger.

Each checkpoint ends one completed run's evidence as pipeline/steps.py writes it (about ten
ledger entries and a certificate; ``fixtures_evidence.write_run``, no report). Three figures:

- *request*: what the receipt requests add to the LA's side, the 1,000 runs' evidence written
  with a witness pinned minus the same without one;
- *steady*: the witness answers after every run (as ``cme demo`` and the simulator DAG do): the
  total of 1,000 ``witness_embedded`` calls (the partner checks and cosigns, the LA files the
  answer);
- *backlog*: the witness was away for all 1,000 checkpoints and answers them in one go
  (``cme partner witness``), then the LA files the 1,000 answers.

Prints every repeat and the medians. Usage::

    .venv/bin/python benchmarks/witness.py [--repeats 3] [--checkpoints 1000]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures_evidence import LA, write_run  # noqa: E402  (the tests' faithful copy of steps.py's calls)

from cme_pipeline.config import Settings, load_settings  # noqa: E402
from cme_pipeline.evidence import witness as la_witness  # noqa: E402
from cme_pipeline.home import open_home  # noqa: E402
from cme_pipeline.simulate import witness as partner_witness  # noqa: E402
from cme_pipeline.simulate.partner import connect_la  # noqa: E402


def _home(tmp: str, pinned: bool) -> Settings:
    settings = load_settings(Path(tmp) / "home", environ={})
    if pinned:
        connect_la(settings, LA)  # the partner pins the LA's key, the LA the witness's
    return settings


def _runs(settings: Settings, count: int, answer_each: bool) -> tuple[float, float]:
    """Write ``count`` runs' evidence; return (seconds writing evidence, seconds witnessing)."""
    writing = witnessing = 0.0
    for i in range(count):
        t0 = time.perf_counter()
        write_run(settings, f"scheduled__{i:06d}", report=False)
        writing += time.perf_counter() - t0
        if answer_each:
            t0 = time.perf_counter()
            answers = partner_witness.witness_embedded(settings, [LA])
            witnessing += time.perf_counter() - t0
            assert [a.kind for a in answers] == ["cosignature"], answers
    return writing, witnessing


def one(count: int) -> dict[str, float]:
    """One repeat of every figure, in fresh homes."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out["no witness: evidence"], _ = _runs(_home(tmp, pinned=False), count, answer_each=False)
    with tempfile.TemporaryDirectory() as tmp:
        out["steady: evidence"], out["steady: witness"] = _runs(_home(tmp, pinned=True), count, answer_each=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = _home(tmp, pinned=True)
        out["backlog: evidence"], _ = _runs(settings, count, answer_each=False)
        assert len(la_witness.waiting_requests(settings, LA)) == count
        t0 = time.perf_counter()
        answers = partner_witness.witness(settings, [LA])
        out["backlog: witness"] = time.perf_counter() - t0
        assert len(answers) == count and {a.kind for a in answers} == {"cosignature"}
        t0 = time.perf_counter()
        la_witness.collect_answers(settings, open_home(settings).keys, LA)
        out["backlog: LA files answers"] = time.perf_counter() - t0
        assert la_witness.waiting_requests(settings, LA) == []
    return out


def main() -> None:
    """Run the benchmark and print every repeat and the medians."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoints", type=int, default=1000)
    args = parser.parse_args()
    out = sys.stdout
    out.write(f"{platform.machine()}, Python {platform.python_version()}; {args.checkpoints} checkpoints "
              f"(one run each) of one LA's ledger\n")
    results = []
    for i in range(args.repeats):
        results.append(one(args.checkpoints))
        out.write(f"repeat {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in results[-1].items()) + "\n")
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    n = args.checkpoints
    out.write(f"median of {args.repeats}:\n")
    extra = median["steady: evidence"] - median["no witness: evidence"]
    out.write(f"  request (LA side, steady)   {extra:7.2f}s  {extra / n * 1000:6.2f} ms per checkpoint\n")
    out.write(f"  steady witness + filing     {median['steady: witness']:7.2f}s  "
              f"{median['steady: witness'] / n * 1000:6.2f} ms per checkpoint\n")
    extra = median["backlog: evidence"] - median["no witness: evidence"]
    out.write(f"  request (LA side, backlog)  {extra:7.2f}s  {extra / n * 1000:6.2f} ms per checkpoint\n")
    out.write(f"  backlog witness             {median['backlog: witness']:7.2f}s  "
              f"{median['backlog: witness'] / n * 1000:6.2f} ms per checkpoint\n")
    out.write(f"  backlog LA files answers    {median['backlog: LA files answers']:7.2f}s\n")


if __name__ == "__main__":
    main()
