"""Whole-pipeline benchmark: `cme demo`, and all 22 LAs at full scale through cme_matching.

    .venv/bin/python benchmarks/pipeline.py demo --runs 3
    .venv/bin/python benchmarks/pipeline.py wales

Each run uses a fresh home in a fresh process. Wall time is the command's; peak RSS is the
largest child process's (``RUSAGE_CHILDREN``). "Airflow's share" is the run's wall time minus
the time spent inside our task functions (task instance durations from Airflow's own metadata
DB, which include a little of Airflow's per-task work, so the share is if anything understated).
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
CME = [sys.executable, "-m", "cme_pipeline.cli"]


def _task_seconds(home: Path) -> tuple[float, float, dict[str, float]]:
    """(run wall, sum of task durations, per-LA seconds) of the last cme_matching run."""
    engine = sa.create_engine(f"sqlite:///{home / 'airflow' / 'airflow.db'}")
    with engine.connect() as conn:
        runs = conn.execute(sa.text(
            "SELECT run_id, start_date, end_date FROM dag_run WHERE dag_id='cme_matching' ORDER BY start_date"
        )).all()
        wall = 0.0
        tasks = 0.0
        per_la: dict[int, float] = {}
        for run_id, start, end in runs:
            wall += (_ts(end) - _ts(start))
            for task_id, map_index, duration in conn.execute(sa.text(
                "SELECT task_id, map_index, duration FROM task_instance "
                "WHERE dag_id='cme_matching' AND run_id=:r"), {"r": run_id}):
                tasks += float(duration or 0)
                if task_id.startswith("per_la."):
                    per_la[map_index] = per_la.get(map_index, 0.0) + float(duration or 0)
    engine.dispose()
    return wall, tasks, {str(k): v for k, v in sorted(per_la.items())}


def _ts(value: object) -> float:
    import datetime as dt

    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.timestamp()


def _timed(args: list[str], home: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run([*CME, "--home", str(home), *args], capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - start, done


def demo(runs: int) -> None:
    """`cme demo` from a warm .venv, fresh home each run."""
    walls, airflow = [], []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            wall, done = _timed(["demo"], home)
            if done.returncode != 0:
                sys.exit(f"cme demo failed: {done.stderr.strip().splitlines()[-1:]}")
            run_wall, task_total, _ = _task_seconds(home)
            walls.append(wall)
            airflow.append(run_wall - task_total)
            print(f"run {i + 1}: {wall:.1f} s wall; cme_matching run {run_wall:.1f} s of which "
                  f"our tasks {task_total:.1f} s, Airflow {run_wall - task_total:.1f} s")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"demo: median {statistics.median(walls):.1f} s wall over {runs} runs; Airflow's share "
          f"median {statistics.median(airflow):.1f} s; peak RSS {peak:.0f} MiB; "
          f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, Python {platform.python_version()}")


def wales() -> None:
    """All 22 LAs at full scale: simulate, then one `cme run --la all`."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        sim, done = _timed(["simulate", "--la", "all"], home)
        if done.returncode != 0:
            sys.exit(done.stderr)
        print(f"simulate all 22 LAs: {sim:.1f} s")
        wall, done = _timed(["run", "--la", "all"], home)
        if done.returncode != 0:
            sys.exit(done.stderr)
        print(done.stdout)
        run_wall, task_total, per_la = _task_seconds(home)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        for index, seconds in per_la.items():
            print(f"  LA #{index} (plan order): {seconds:.1f} s in tasks")
        print(f"cme run --la all: {wall:.1f} s wall (cme_matching {run_wall:.1f} s, our tasks "
              f"{task_total:.1f} s); peak RSS {peak:.0f} MiB (goal < 8 GB); "
              f"{platform.machine()}, Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("demo")
    d.add_argument("--runs", type=int, default=3)
    sub.add_parser("wales")
    args = parser.parse_args()
    if args.what == "demo":
        demo(args.runs)
    else:
        wales()


if __name__ == "__main__":
    main()
