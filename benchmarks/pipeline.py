"""Whole-pipeline benchmark: `cme demo`, and all 22 LAs at full scale through cme_matching.

    .venv/bin/python benchmarks/pipeline.py demo --runs 3
    .venv/bin/python benchmarks/pipeline.py wales [--postgres] [--residue]

Each run uses a fresh home in a fresh process. Wall time is the command's; peak RSS is the
largest child process's (``RUSAGE_CHILDREN``). "Airflow's share" of the demo is its wall time
minus the simulation and the time inside our task functions (task instance durations from
Airflow's own metadata DB, which include a little of Airflow's per-task work, so the share is if
anything understated).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
CME = [sys.executable, "-m", "cme_pipeline.cli"]


def _task_seconds(engine: sa.Engine) -> tuple[float, float, dict[str, float]]:
    """(run wall, sum of task durations, per-LA seconds) of the cme_matching runs."""
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
                if task_id.startswith("per_la.") and map_index >= 0:  # -1: the unexpanded abandon
                    per_la[map_index] = per_la.get(map_index, 0.0) + float(duration or 0)
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
    """`cme demo` from a warm .venv, fresh home each run.

    Airflow's share is everything that is neither the simulation nor our task code: Python and
    Airflow start-up, creating the metadata DB, parsing the DAG, scheduling and recording tasks.
    """
    walls, airflow, in_run = [], [], []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            wall, done = _timed(["demo"], home)
            if done.returncode != 0:
                sys.exit(f"cme demo failed: {done.stderr.strip().splitlines()[-1:]}")
            simulated = float(re.search(r"simulation took ([0-9.]+)s", done.stderr).group(1))  # type: ignore[union-attr]
            engine = sa.create_engine(f"sqlite:///{home / 'airflow' / 'airflow.db'}")
            run_wall, task_total, _ = _task_seconds(engine)
            engine.dispose()
            walls.append(wall)
            airflow.append(wall - simulated - task_total)
            in_run.append(run_wall - task_total)
            print(f"run {i + 1}: {wall:.1f} s wall = simulate {simulated:.1f} s + our tasks {task_total:.1f} s "
                  f"+ Airflow {wall - simulated - task_total:.1f} s (of which inside the DAG run "
                  f"{run_wall - task_total:.1f} s)")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"demo: median {statistics.median(walls):.1f} s wall over {runs} runs; Airflow's share "
          f"median {statistics.median(airflow):.1f} s ({statistics.median(in_run):.1f} s inside the DAG run); "
          f"peak RSS {peak:.0f} MiB; {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
          f"Python {platform.python_version()}")


def _plan_order(engine: sa.Engine) -> list[str]:
    """LA codes in the order the last cme_matching run's ``plan`` task returned them (its XCom)."""
    import json

    with engine.connect() as conn:
        value = conn.execute(sa.text(
            "SELECT value FROM xcom WHERE dag_id='cme_matching' AND task_id='plan' ORDER BY timestamp DESC"
        )).scalar()
    try:
        codes = json.loads(value) if isinstance(value, str | bytes) else value
    except ValueError:
        return []
    return [str(c) for c in codes] if isinstance(codes, list) else []


def _probe(home: Path, env: dict[str, str], la_side: list[Path]) -> object:
    """What the residue scan looks for: every NHS number delivered, and name + dob + postcode of
    every child on no register, less those the LA side's files already show side by side (its
    own registers), read partner-side before the run."""
    import pandas as pd
    from residue import Probe

    from cme_pipeline.config import load_settings
    from cme_pipeline.crypto import open_delivery
    from cme_pipeline.home import open_home
    from cme_pipeline.quality.extract_csv import parse_extract

    settings = load_settings(home, environ={k: v for k, v in env.items() if k.startswith("CME_")})
    keys = open_home(settings).keys
    extracts, unregistered = [], []
    for truth_file in sorted((settings.partner_dir / "truth").glob("W*[0-9].csv")):
        la = truth_file.stem
        path = next(settings.inbox(la).glob("*.cmedelivery"))
        extract = parse_extract(open_delivery(keys, path.read_bytes(), la_code=la)[1])
        truth = pd.read_csv(truth_file, dtype=str, keep_default_na=False)
        unregistered.append(extract[extract["nhs_number"].isin(set(truth.loc[truth["registers"] == "", "nhs_number"]))])
        extracts.append(extract)
    everyone = Probe.from_extract(pd.concat(extracts), pd.concat(unregistered))
    probe = everyone.without_people_already_held(la_side)
    print(f"residue probe: {len(probe.nhs_numbers)} NHS numbers, {probe.people} of {everyone.people} "
          f"children on no register (the rest the registers already show side by side)")
    return probe


def _la_side(home: Path, scratch: Path, server: Any) -> list[Path]:
    """Everything the LA side can reach: the home but the partner's part, the run's TMPDIR and,
    on PostgreSQL, the cluster's files and server log."""
    roots = [p for p in home.iterdir() if p.name != "partner"] + [scratch]
    return roots + ([server.datadir, server.logfile] if server is not None else [])


def wales(postgres: bool, residue: bool, las: str = "all", keep: bool = False) -> None:
    """All 22 LAs at full scale: simulate, then one `cme run --la all`; optionally on a real
    PostgreSQL (LA store and Airflow metadata) and with the no-residue byte scan afterwards."""
    sys.path.insert(0, str(ROOT / "tests"))
    from cme_pipeline.config import load_settings

    server = None
    with tempfile.TemporaryDirectory() as tmp:
        home, scratch = Path(tmp) / "home", Path(tmp) / "tmp"
        scratch.mkdir()
        env = {"TMPDIR": str(scratch)}
        if postgres:
            from postgres_server import start_server

            server = start_server()
            if server is None:
                sys.exit("PostgreSQL server binaries are not installed")
            env["CME_DATABASE_URL"] = server.create_database("cme")
            env["CME_AIRFLOW_DATABASE_URL"] = server.create_database("airflow")
        os.environ.update(env)
        try:
            sim, done = _timed(["simulate", "--la", las], home)
            if done.returncode != 0:
                sys.exit(done.stderr)
            print(f"simulate {las}: {sim:.1f} s ({'PostgreSQL' if postgres else 'SQLite'})")
            if residue and server is not None:
                server.checkpoint()
            probe = _probe(home, env, _la_side(home, scratch, server)) if residue else None
            wall, done = _timed(["run", "--la", las], home)
            if done.returncode != 0:
                sys.exit(done.stderr)
            print(done.stdout)
            settings = load_settings(home, environ={k: v for k, v in env.items() if k.startswith("CME_")})
            engine = sa.create_engine(settings.airflow_metadata_url())
            run_wall, task_total, per_la = _task_seconds(engine)
            order = _plan_order(engine)
            engine.dispose()
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            for index, seconds in per_la.items():
                code = order[int(index)] if int(index) < len(order) else f"#{index}"
                print(f"  {code}: {seconds:.1f} s in tasks")
            print(f"cme run --la {las}: {wall:.1f} s wall (cme_matching {run_wall:.1f} s, our tasks "
                  f"{task_total:.1f} s); peak RSS {peak:.0f} MiB (goal < 8 GB); "
                  f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}")
            if probe is not None:
                from residue import scan

                if server is not None:
                    server.checkpoint()
                roots = _la_side(home, scratch, server)  # again: the run added airflow/
                files = [f for r in roots for f in ([r] if r.is_file() else r.rglob("*")) if f.is_file()]
                size = sum(f.stat().st_size for f in files)
                start = time.perf_counter()
                hits = scan(roots, probe)  # type: ignore[arg-type]
                print(f"residue scan: {len(files)} files, {size / 2**20:.0f} MiB, {time.perf_counter() - start:.0f} s: "
                      f"{len(hits)} file(s) with a hit")
                for path, kinds in sorted(hits.items()):
                    print(f"  hit: {path}: {', '.join(kinds)}")
                if hits and keep:
                    if server is not None:
                        server.stop()
                        server = None
                    kept = Path(tempfile.mkdtemp(prefix="cme-residue-"))
                    shutil.copytree(tmp, kept / "run", symlinks=True)
                    print(f"  kept for inspection: {kept} (PostgreSQL files stay under the server root)")
        finally:
            if server is not None:
                server.stop()
                if not keep:
                    shutil.rmtree(server.root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("demo")
    d.add_argument("--runs", type=int, default=3)
    w = sub.add_parser("wales")
    w.add_argument("--postgres", action="store_true", help="LA store and Airflow metadata on a real PostgreSQL")
    w.add_argument("--residue", action="store_true", help="scan every byte the LA side can reach afterwards")
    w.add_argument("--la", default="all", help="LA codes to run (default all 22)")
    w.add_argument("--keep", action="store_true", help="keep the home and database files when the scan hits")
    args = parser.parse_args()
    if args.what == "demo":
        demo(args.runs)
    else:
        wales(args.postgres, args.residue, args.la, args.keep)


if __name__ == "__main__":
    main()
