"""Benchmark: what the Great Expectations gates add to a run (DESIGN.md §5; issue 5).

Times, per scale, the strict parse plus the delivery suite, and the four later suites on
realistically sized inputs: Cardiff (about 57,000 children) and all Wales (about 440,000, one
extract of that size, which costs at least as much as 22 smaller ones). Prints the median of
several runs and the process's peak memory. Usage::

    .venv/bin/python benchmarks/quality.py [--runs 3] [--scale cardiff|wales|both]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from cme_pipeline.nhs_number import generate_test_numbers
from cme_pipeline.quality import (
    parse_extract,
    validate_delivery,
    validate_match_output,
    validate_post_deletion,
    validate_registers,
    validate_retained,
)
from cme_pipeline.quality.runner import _batch_definition
from cme_pipeline.schemas import HEALTH_EXTRACT, MATCH_OUTCOME, RETAINED
from cme_pipeline.simulate import SimulatedLA, simulate_la

SIZES = {"cardiff": 57_000, "wales": 440_000}


def _median(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _scaled(sim_extract: pd.DataFrame, n: int) -> pd.DataFrame:
    """Repeat the simulated extract to ``n`` rows with fresh, unique NHS numbers."""
    reps = -(-n // len(sim_extract))
    frame = pd.concat([sim_extract] * reps, ignore_index=True).iloc[:n].copy()
    frame["nhs_number"] = generate_test_numbers(n, np.random.default_rng(7))
    return frame


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", choices=["cardiff", "wales", "both"], default="both")
    args = parser.parse_args()
    start = time.perf_counter()
    _batch_definition()
    print(f"GX import and ephemeral context (once per process): {time.perf_counter() - start:.2f} s")
    sim = simulate_la("W06000015", year_start=2026)
    scales = ["cardiff", "wales"] if args.scale == "both" else [args.scale]
    for scale in scales:
        _bench_scale(sim, scale, args.runs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory {peak:.0f} MiB; machine: {os.cpu_count()} cores (shared)")


def _bench_scale(sim: SimulatedLA, scale: str, runs: int) -> None:
    """Build inputs of one scale and time every gate on them."""
    n = SIZES[scale]
    extract = _scaled(sim.extract[list(HEALTH_EXTRACT)], n)
    plaintext = extract.to_csv(index=False, lineterminator="\n").encode()
    registers = {k: (pd.concat([v] * (-(-n // len(sim.extract))), ignore_index=True) if len(v) else v)
                 for k, v in sim.registers.items()}
    for k, v in registers.items():
        v["record_id"] = [f"{k[:3].upper()}{i:09d}" for i in range(len(v))]
    rng = np.random.default_rng(3)
    p = rng.random(n)
    outcomes = pd.DataFrame({
        "health_record_id": [f"h{i}" for i in range(n)],
        "outcome": np.select([p >= 0.06, p >= 0.04], ["matched", "possible"], "unmatched"),
        "register": "school_census",
        "register_record_id": [f"SCH{i:09d}" for i in range(n)],
        "probability": np.select([p >= 0.06, p >= 0.04], [0.99, 0.7], 0.1),
    })[list(MATCH_OUTCOME)]
    kept = extract[outcomes["outcome"].to_numpy() != "matched"].copy()
    kept["outcome"] = outcomes.loc[outcomes["outcome"] != "matched", "outcome"].to_numpy()
    kept["best_probability"], kept["best_register"], kept["run_id"] = 0.5, "school_census", "bench"
    kept["retention_expiry"] = dt.date(2027, 2, 1)
    kept = kept[list(RETAINED)]
    matched_numbers = extract.loc[outcomes["outcome"].to_numpy() == "matched", "nhs_number"].tolist()
    counts = {"received": n, "matched": len(matched_numbers), "possible": int(((p >= 0.04) & (p < 0.06)).sum()),
              "unmatched": int((p < 0.04).sum()), "retained": len(kept)}

    def delivery() -> None:
        frame = parse_extract(plaintext)
        validate_delivery(frame, manifest_rows=n, year_start=2026, extract_date=dt.date(2026, 10, 1))

    steps: dict[str, Callable[[], object]] = {
        "parse + delivery suite": delivery,
        "registers suite": lambda: validate_registers(registers),
        "match output suite": lambda: validate_match_output(outcomes, n, {"school_census": n}, 0.95, 0.5),
        "retained suite": lambda: validate_retained(kept, matched_numbers, dt.date(2026, 11, 1)),
        "post-deletion suite": lambda: validate_post_deletion(0, counts),
    }
    total = 0.0
    print(f"\n{scale}: {n} health records, {sum(len(v) for v in registers.values())} register records, "
          f"{len(kept)} retained; median of {runs} runs")
    for name, fn in steps.items():
        t = _median(fn, runs)
        total += t
        print(f"  {name:<24} {t:7.2f} s")
    print(f"  {'all suites':<24} {total:7.2f} s")


if __name__ == "__main__":
    main()
