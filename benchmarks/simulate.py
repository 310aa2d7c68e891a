"""Benchmark: `cme simulate --la all` at full scale (about 440,000 children).

Runs the real command in a fresh subprocess per repeat (so peak RSS is the command's own) and
prints each run's wall time and peak memory, then the medians.

    .venv/bin/python benchmarks/simulate.py [--repeats 3] [--children N]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(children: int | None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `cme simulate --la all` in a fresh home."""
    with tempfile.TemporaryDirectory() as home:
        cmd = [str(ROOT / ".venv" / "bin" / "cme"), "--home", home, "simulate", "--la", "all"]
        if children is not None:
            cmd += ["--children", str(children)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - start
        # ru_maxrss of children is the largest child so far; every run is the same command.
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return wall, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--children", type=int)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    walls, peaks = [], []
    for i in range(args.repeats):
        wall, peak = one_run(args.children)
        walls.append(wall)
        peaks.append(peak)
        print(f"run {i + 1}: {wall:.1f} s wall, peak RSS {peak:.0f} MiB")
    print(
        f"cme simulate --la all ({args.children or 'full scale, ~440,000'} children): "
        f"median {statistics.median(walls):.1f} s wall (goal <= 60 s), "
        f"peak RSS {max(peaks):.0f} MiB (goal < 4096 MiB)"
    )


if __name__ == "__main__":
    main()
