"""Benchmark: the cost of the evidence ledger, checkpoints, certificates, report and verify (issue 7).

A steady state: one LA's ledger after ``--runs-in-ledger`` completed runs (9 entries, a
certificate, a report and a checkpoint each, as pipeline/steps.py writes them). Times one more
run's evidence (all of it, fsyncs included) and a full ``verify`` of the LA. Prints the median
of several repeats and the process's peak memory. Usage::

    .venv/bin/python benchmarks/evidence.py [--repeats 3] [--runs-in-ledger 100,1000]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures_evidence import write_run  # noqa: E402  (the tests' faithful copy of steps.py's calls)

from cme_pipeline import evidence as proof  # noqa: E402
from cme_pipeline.config import load_settings  # noqa: E402
from cme_pipeline.home import open_home


def _one(runs: int) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(Path(tmp) / "home", environ={})
        t0 = time.perf_counter()
        for i in range(runs):
            write_run(settings, f"scheduled__{i:06d}", report=False)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_run(settings, "manual__next", report=True)
        one_run = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = proof.verify(settings, open_home(settings).keys, airflow=False)
        verify = time.perf_counter() - t0
        assert report.ok, report.problems[:3]
        return build / runs, one_run, verify, report.entries


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs-in-ledger", default="100,1000")
    args = parser.parse_args()
    out = sys.stdout
    out.write(f"{'runs in ledger':>14} {'entries':>8} {'per run (avg)':>14} {'next run + report':>18} {'verify':>8}\n")
    for runs in (int(r) for r in args.runs_in_ledger.split(",")):
        results = [_one(runs) for _ in range(args.repeats)]
        avg = statistics.median(r[0] for r in results)
        nxt = statistics.median(r[1] for r in results)
        ver = statistics.median(r[2] for r in results)
        out.write(f"{runs:>14} {results[0][3]:>8} {avg * 1000:>12.1f}ms {nxt * 1000:>16.1f}ms {ver:>7.2f}s\n")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write(f"median of {args.repeats}; peak RSS {peak:.0f} MiB\n")


if __name__ == "__main__":
    main()
