"""`cme run` runs the LAs in parallel worker processes, with the outcome of a sequential run.

The same simulated deliveries (one home, copied) run once with ``--workers 1`` (everything in
the one process, task after task) and once with ``--workers 2``. In the parallel home tasks of
the two LAs ran at the same time (their task instances' spans in Airflow's metadata DB
intersect; in the sequential home none does); the counts, the ledger's events and the evidence
(``cme evidence verify``) are the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.evidence import ledger
from cme_pipeline.simulate.wales import simulate_to_home

LAS = ["W06000001", "W06000008"]
COUNTS = ("received", "matched", "possible", "unmatched", "retained")


def _cme(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CME_", "AIRFLOW"))}
    return subprocess.run([sys.executable, "-m", "cme_pipeline.cli", "--home", str(home), *args],
                          env=env, capture_output=True, text=True)


def _state(settings: Settings, la: str) -> dict[str, object]:
    (state_file,) = (settings.store_dir(la) / "runs").glob("*/state.json")
    state: dict[str, object] = json.loads(state_file.read_text())
    return state


def _task_spans(settings: Settings, la: str) -> list[tuple[float, float]]:
    """(start, end) of every task instance of the LA's task group in its run."""
    run_id = _state(settings, la)["run_id"]
    engine = sa.create_engine(settings.airflow_metadata_url())
    try:
        with engine.connect() as conn:
            planned = conn.execute(sa.text(
                "SELECT value FROM xcom WHERE dag_id='cme_matching' AND task_id='plan' AND run_id=:r"),
                {"r": run_id}).scalar_one()
            codes = json.loads(planned) if isinstance(planned, str | bytes) else planned
            rows = conn.execute(sa.text(
                "SELECT start_date, end_date FROM task_instance WHERE dag_id='cme_matching' AND run_id=:r "
                "AND task_id LIKE 'per_la.%' AND map_index=:i AND start_date IS NOT NULL"),
                {"r": run_id, "i": codes.index(la)}).all()
    finally:
        engine.dispose()
    assert rows
    return [(_seconds(start), _seconds(end)) for start, end in rows]


def _seconds(value: object) -> float:
    import datetime as dt

    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, dt.datetime)
    return moment.timestamp()


def _overlapping(first: list[tuple[float, float]], second: list[tuple[float, float]]) -> int:
    return sum(1 for a in first for b in second if a[0] < b[1] and b[0] < a[1])


@pytest.mark.airflow
def test_las_run_in_parallel_with_the_outcome_of_a_sequential_run(tmp_path: Path) -> None:
    template = tmp_path / "template"
    simulate_to_home(load_settings(template / "home", environ={}), LAS, children=800, seed=17)
    homes: dict[int, Settings] = {}
    for workers in (1, 2):
        shutil.copytree(template, tmp_path / f"workers{workers}", symlinks=True)  # the home and home.keys
        homes[workers] = load_settings(tmp_path / f"workers{workers}" / "home", environ={})
        done = _cme(homes[workers].home, "run", "--la", ",".join(LAS), "--workers", str(workers))
        assert done.returncode == 0, done.stderr[-2000:]

    sequential, parallel = homes[1], homes[2]
    # Two processes, one run each; their LAs' tasks ran at the same time. One process: never.
    assert _state(parallel, LAS[0])["run_id"] != _state(parallel, LAS[1])["run_id"]
    assert _overlapping(_task_spans(parallel, LAS[0]), _task_spans(parallel, LAS[1])) > 0
    assert _state(sequential, LAS[0])["run_id"] == _state(sequential, LAS[1])["run_id"]
    assert _overlapping(_task_spans(sequential, LAS[0]), _task_spans(sequential, LAS[1])) == 0

    for la in LAS:
        before, after = _state(sequential, la), _state(parallel, la)
        assert after.get("completed") is True
        assert {k: after[k] for k in COUNTS} == {k: before[k] for k in COUNTS}, la
        events = {home: [e["event"] for e in ledger.read_entries(home, la)] for home in (sequential, parallel)}
        assert events[parallel] == events[sequential], la
    verified = _cme(parallel.home, "evidence", "verify")
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
