"""Benchmark: time to parse dags/ (goal under 2 s), as Airflow's DAG processor would.

Each repeat is a fresh interpreter that imports Airflow first (not timed), then times DagBag over
the DAG folder.

    .venv/bin/python benchmarks/dag_parse.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile

from cme_pipeline.config import load_settings
from cme_pipeline.embedded_airflow import DAGS_FOLDER, airflow_environment

PROBE = """
import sys, time
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - start
assert not bag.import_errors, bag.import_errors
print("PARSED", elapsed, len(bag.dags))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    times = []
    with tempfile.TemporaryDirectory() as home:
        env = os.environ | airflow_environment(load_settings(home, environ={}))
        for i in range(args.repeats):
            stdout = subprocess.run(
                [sys.executable, "-c", PROBE, str(DAGS_FOLDER)], env=env, capture_output=True, text=True, check=True
            ).stdout
            out = next(line for line in stdout.splitlines() if line.startswith("PARSED")).split()[1:]
            times.append(float(out[0]))
            print(f"run {i + 1}: {times[-1]:.3f} s for {out[1]} DAGs")
    print(f"parse time of dags/: median {statistics.median(times):.3f} s (goal < 2 s)")


if __name__ == "__main__":
    main()
