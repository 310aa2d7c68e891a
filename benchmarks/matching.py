"""Benchmark: matching accuracy, speed, memory and scaling on simulated data with ground truth.

    .venv/bin/python benchmarks/matching.py accuracy [--scale cardiff|wales] [--noise 1.0]
    .venv/bin/python benchmarks/matching.py speed [--scale cardiff|wales] [--runs 3]
    .venv/bin/python benchmarks/matching.py scaling [--runs 1]
    .venv/bin/python benchmarks/matching.py review [--scale cardiff|wales] [--noise 2.0] [--hard] [--pairwise]

Accuracy: per register, precision/recall/F1 of the match band (pairs from ``link``, one-to-one
per register), and per child (from ``match_registers``): missing children wrongly matched,
registered children wrongly unmatched (per 10,000 children on the extract), twins cross-matched,
and blocking recall. Speed: ``match_registers`` on health vs all four registers, each run in a
fresh subprocess that loads the prepared inputs from a pickle, so peak RSS is matching plus its
inputs (not the simulator).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matching_data import Dataset, cardiff, child_metrics, pair_metrics, wales  # noqa: E402

from cme_pipeline.areas import LA_CODES  # noqa: E402
from cme_pipeline.matching import link, match_registers  # noqa: E402
from cme_pipeline.matching.blocking import block  # noqa: E402
from cme_pipeline.matching.prepare import prepare  # noqa: E402


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def dataset(scale: str, noise: float) -> Dataset:
    return cardiff(noise) if scale == "cardiff" else wales(noise)


def blocking_recall(data: Dataset, register: str) -> float:
    L, R = prepare(data.health), prepare(data.registers[register])
    cand = block(L, R)
    rt = data.register_truth[data.register_truth["register"] == register]
    owner = dict(zip(rt["record_id"], rt["nhs_number"], strict=True))
    right_nhs = np.array([owner[r] for r in R.record_id], dtype=object)
    found = int((data.nhs[cand.left] == right_nhs[cand.right]).sum())
    true_pairs = int(rt["nhs_number"].isin(set(data.nhs)).sum())
    return found / max(true_pairs, 1)


def accuracy(scale: str, noise: float) -> None:
    data = dataset(scale, noise)
    print(f"{data.name}, noise x{noise}: {len(data.health)} health records, "
          + ", ".join(f"{k} {len(v)}" for k, v in data.registers.items()))
    totals = {"tp": 0, "fp": 0, "fn": 0}
    for register, frame in data.registers.items():
        pairs = link(data.health, frame)
        m = pair_metrics(data, register, pairs[pairs["band"] == "match"])
        for k in totals:
            totals[k] += m[k]
        print(f"  {register:14s} precision {m['precision']:.5f} recall {m['recall']:.5f} F1 {m['f1']:.5f} "
              f"(tp {m['tp']}, fp {m['fp']}, fn {m['fn']}); blocking recall {blocking_recall(data, register):.5f}")
    p = totals["tp"] / max(totals["tp"] + totals["fp"], 1)
    r = totals["tp"] / max(totals["tp"] + totals["fn"], 1)
    print(f"  {'overall':14s} precision {p:.5f} recall {r:.5f} F1 {2 * p * r / (p + r):.5f} "
          f"(tp {totals['tp']}, fp {totals['fp']}, fn {totals['fn']})")
    c = child_metrics(data, match_registers(data.health, data.registers))
    print(f"  children: {c['children']} ({c['off_register']} on no register); "
          f"missing children wrongly matched {c['missing_wrongly_matched']} "
          f"({c['per10k_missing_wrongly_matched']:.2f} per 10,000); registered children wrongly unmatched "
          f"{c['registered_wrongly_unmatched']} ({c['per10k_registered_wrongly_unmatched']:.1f} per 10,000, "
          f"of which {c['possible']} children in total are 'possible' for review); matched to a wrong record "
          f"{c['registered_matched_to_wrong_record']}; twins cross-matched {c['twins_cross_matched']}")


def review(scale: str, noise: float, hard: bool, pairwise: bool) -> None:
    """The pipeline's outcome per child: review share, match precision and recall, missing
    children wrongly matched (issue 19's goals)."""
    data = cardiff(noise, hard) if scale == "cardiff" else wales(noise, hard=hard)
    start = time.perf_counter()
    out = match_registers(data.health, data.registers, pairwise=pairwise)
    wall = time.perf_counter() - start
    c = child_metrics(data, out)
    matched = int((out["outcome"] == "matched").sum())
    wrong = c["missing_wrongly_matched"] + c["registered_matched_to_wrong_record"]
    on_register = c["children"] - c["off_register"]
    print(f"{data.name}, noise x{noise}{', hard families' if hard else ''}, "
          f"{'pairwise bands' if pairwise else 'assignment'}: {c['children']} children, {wall:.0f} s")
    print(f"  review share {c['possible'] / c['children']:.2%} ({c['possible']} possible); match precision "
          f"{1 - wrong / max(matched, 1):.6f}; recall {(matched - wrong) / max(on_register, 1):.5f}; "
          f"missing children wrongly matched {c['missing_wrongly_matched']} "
          f"({c['per10k_missing_wrongly_matched']:.2f} per 10,000); matched to a wrong record "
          f"{c['registered_matched_to_wrong_record']}; twins cross-matched {c['twins_cross_matched']}")


def _worker(path: str) -> None:
    data = Dataset.load(Path(path))
    start = time.perf_counter()
    out = match_registers(data.health, data.registers)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{wall:.3f} {peak:.0f} {len(out)}")


def timed_runs(data: Dataset, runs: int) -> tuple[list[float], list[float]]:
    walls, peaks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.pickle"
        data.save(path)
        for _ in range(runs):
            done = subprocess.run([sys.executable, __file__, "_worker", str(path)], check=True,
                                  capture_output=True, text=True)
            wall, peak, _ = done.stdout.split()
            walls.append(float(wall))
            peaks.append(float(peak))
    return walls, peaks


def speed(scale: str, runs: int) -> None:
    data = dataset(scale, 1.0)
    sizes = f"{len(data.health)} health vs " + "+".join(str(len(v)) for v in data.registers.values())
    walls, peaks = timed_runs(data, runs)
    for i, (w, p) in enumerate(zip(walls, peaks, strict=True)):
        print(f"  run {i + 1}: {w:.1f} s wall, peak RSS {p:.0f} MiB")
    print(f"{data.name} ({sizes}): median {statistics.median(walls):.1f} s wall, "
          f"peak RSS {max(peaks):.0f} MiB over {runs} runs")


def scaling_run(runs: int) -> None:
    targets = (10_000, 50_000, 100_000, 200_000, 440_000)
    from matching_data import build

    from cme_pipeline.simulate.geography import AREAS

    order = sorted(LA_CODES, key=lambda c: AREAS[c].children)
    previous = None
    for target in targets:
        codes: list[str] = []
        for code in order:
            if sum(AREAS[c].children for c in codes) >= target * 0.95:
                break
            codes.append(code)
        if codes == previous:
            continue
        previous = codes
        data = build(codes, name=f"{len(codes)} LAs")
        walls, peaks = timed_runs(data, runs)
        n = len(data.health)
        med = statistics.median(walls)
        print(f"  {n:7d} health vs {sum(len(v) for v in data.registers.values()):7d} register records "
              f"({len(codes)} LAs): median {med:.1f} s, {1e6 * med / n:.1f} us per health record, "
              f"peak RSS {max(peaks):.0f} MiB")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_worker":
        _worker(sys.argv[2])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("accuracy", "speed", "scaling", "review"))
    parser.add_argument("--hard", action="store_true", help="harder families and registers a term old")
    parser.add_argument("--pairwise", action="store_true", help="the earlier pairwise decision")
    parser.add_argument("--scale", choices=("cardiff", "wales"), default="cardiff")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.what == "accuracy":
        accuracy(args.scale, args.noise)
    elif args.what == "review":
        review(args.scale, args.noise, args.hard, args.pairwise)
    elif args.what == "speed":
        speed(args.scale, args.runs)
    else:
        scaling_run(args.runs)


if __name__ == "__main__":
    main()
