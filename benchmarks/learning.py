"""Benchmark: learning from officers' review decisions, the three-term curve (issue 19).

    .venv/bin/python benchmarks/learning.py [--hard] [--noise 1.0] [--errors 0.01] [--terms 3] [--children N]

An LA (Cardiff, about 57,000 children, or ``--children`` of Cardiff's) over three terms.
Each term is a fresh simulated extract with its registers (seed 20260901 + term - 1: other
children of the same LA, so nothing is learned about a particular child, only about agreement
patterns). In each term ``match_registers`` runs with every decision stored so far (as the
pipeline's match step does); a simulated officer decides every review row by the simulator's
ground truth, a share ``--errors`` of them flipped at random (wrong clicks); the decided pairs'
agreement patterns (``matching.agreement_patterns``, what ``cme review apply`` stores) join the
store; the next term learns from all of them. From the second term on, the same term is also
matched without the decisions, so the effect is measured on the same data.

Per term: review share (children ``possible``), match precision, recall (children on a register
matched to their own record), missing children wrongly matched, twins cross-matched, children
sent to follow-up by the learning (``cleared``) and how many of those are on a register.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matching_data import CARDIFF, Dataset, _owner, build, child_metrics  # noqa: E402

from cme_pipeline.matching import agreement_patterns, match_registers  # noqa: E402
from cme_pipeline.schemas import DECIDED_PAIR  # noqa: E402
from cme_pipeline.simulate.geography import AREAS  # noqa: E402

SEED = 20260901


def officer(data: Dataset, out: pd.DataFrame, errors: float, rng: np.random.Generator) -> pd.DataFrame:
    """Every review row decided by the ground truth (a share ``errors`` flipped), as stored by
    ``cme review apply``: the pair's agreement levels and the decision (and, for the count only,
    whether the decision was one of the flipped ones)."""
    review = np.flatnonzero((out["outcome"] == "possible").to_numpy())
    owner = _owner(data)
    rows = out.iloc[review]
    same = np.array([owner.get((r, i), "") == n for r, i, n in
                     zip(rows["register"], rows["register_record_id"], data.nhs[review], strict=True)])
    wrong = rng.random(len(same)) < errors
    same ^= wrong
    decided = []
    for source in sorted(set(rows["register"])):
        mine = (rows["register"] == source).to_numpy()
        register = data.registers[source].set_index("record_id", drop=False)
        theirs = register.loc[rows.loc[mine, "register_record_id"].astype(str)]
        levels = agreement_patterns(data.health.iloc[review[mine]], theirs)
        decided.append(levels.assign(same=same[mine], wrong=wrong[mine]))
    columns = [*DECIDED_PAIR, "wrong"]
    return pd.concat(decided, ignore_index=True)[columns] if decided else pd.DataFrame(columns=columns)


def figures(data: Dataset, out: pd.DataFrame) -> dict[str, float]:
    c = child_metrics(data, out)
    matched = int((out["outcome"] == "matched").sum())
    wrong = c["missing_wrongly_matched"] + c["registered_matched_to_wrong_record"]
    on_register = c["children"] - c["off_register"]
    return {"children": c["children"], "review": c["possible"], "share": c["possible"] / c["children"],
            "precision": 1 - wrong / max(matched, 1), "recall": (matched - wrong) / max(on_register, 1),
            "missing": c["missing_wrongly_matched"], "per10k": c["per10k_missing_wrongly_matched"],
            "twins": c["twins_cross_matched"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hard", action="store_true", help="harder families and registers a term old")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--errors", type=float, default=0.0, help="share of the officer's decisions flipped")
    parser.add_argument("--terms", type=int, default=3)
    parser.add_argument("--children", type=int, default=0, help="an LA of this many children (0: Cardiff's size)")
    args = parser.parse_args()
    rng = np.random.default_rng([SEED, 7])
    stored = pd.DataFrame(columns=list(DECIDED_PAIR))
    size = args.children or AREAS[CARDIFF].children
    print(f"Cardiff {size} children, noise x{args.noise}{', hard' if args.hard else ''}, "
          f"officer errors {args.errors:.1%}")
    for term in range(1, args.terms + 1):
        start = time.perf_counter()
        data = build([CARDIFF], args.noise, seed=SEED + term - 1, name=f"term {term}", hard=args.hard,
                     children=args.children or None)
        out = match_registers(data.health, data.registers, decisions=stored)
        f = figures(data, out)
        line = (f"term {term}: learned from {len(stored)} decisions; review share {f['share']:.2%} ({f['review']}); "
                f"precision {f['precision']:.6f}; recall {f['recall']:.5f}; missing wrongly matched {f['missing']} "
                f"({f['per10k']:.2f} per 10k); twins cross-matched {f['twins']}")
        if len(stored):
            base = match_registers(data.health, data.registers)
            b = figures(data, base)
            cleared = (base["outcome"] == "possible").to_numpy() & (out["outcome"] == "unmatched").to_numpy()
            line += (f"; without learning: review {b['share']:.2%} ({b['review']}), recall {b['recall']:.5f}, "
                     f"missing wrongly matched {b['missing']}; cleared {int(cleared.sum())} "
                     f"(attrs {out.attrs['cleared_by_decisions']}), of which on a register "
                     f"{int((cleared & ~data.off_register).sum())}")
        decided = officer(data, out, args.errors, rng)
        line += f"; officer wrong on {int(decided['wrong'].sum())} of {len(decided)}"
        stored = pd.concat([stored, decided[list(DECIDED_PAIR)]], ignore_index=True).astype({"same": bool})
        print(f"{line}; {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
