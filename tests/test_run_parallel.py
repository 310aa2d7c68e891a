"""`cme run` runs the LAs in parallel worker processes, with the outcome of a sequential run.

The same simulated deliveries (one home, copied) run once with ``--workers 1`` (everything in
the one process, task after task) and once with ``--workers 2``. In the parallel home tasks of
the two LAs ran at the same time (their task instances' spans in Airflow's metadata DB
intersect; in the sequential home none does); the counts, the ledger's events and the evidence
(``cme evidence verify``) are the same.

The two LAs are neighbours with children on each other's registers, so the same runs also show
that `cme run` runs the cross-LA check once the LAs' runs are done (issue 15): a child of one LA
on the other's register leaves the retained list, no child on no register does, and the ledger
entry names only LA codes and counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.crypto import open_delivery
from cme_pipeline.evidence import files, ledger
from cme_pipeline.home import open_home
from cme_pipeline.la.minimise import read_retained
from cme_pipeline.quality.extract_csv import parse_extract
from cme_pipeline.simulate.wales import simulate_to_home

LAS = ["W06000014", "W06000015"]  # the Vale of Glamorgan and Cardiff: neighbours
CROSS_LA_FACTS = {"checked", "found_on_other_la_register", "removed", "possibly_on_other_la_register", "moved_to_other_la"}
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
    simulate_to_home(load_settings(template / "home", environ={}), LAS, children=800, seed=17, cross_la_rate=0.08)
    people = pd.concat([_extract(load_settings(template / "home", environ={}), la) for la in LAS], ignore_index=True)
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
    _check_cross_la(parallel, people)
    verified = _cme(parallel.home, "evidence", "verify")
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]


def _extract(settings: Settings, la: str) -> pd.DataFrame:
    """The partner's plaintext, read in the test only, to know what must not reach the ledger."""
    path = next(settings.inbox(la).glob("*.cmedelivery"))
    return parse_extract(open_delivery(open_home(settings).keys, path.read_bytes(), la_code=la)[1])


def _check_cross_la(settings: Settings, people: pd.DataFrame) -> None:
    """The cross-LA check after the runs removed a child found on the neighbour's register, and
    only such a child; each LA's ledger entry holds LA codes and counts, no child."""
    truth = pd.concat([pd.read_csv(settings.partner_dir / "truth" / f"{la}.csv", dtype=str, keep_default_na=False)
                       for la in LAS], ignore_index=True)
    cross = truth[truth["other_la"] != ""]
    nowhere = truth[(truth["other_la"] == "") & (truth["registers"] == "")]
    assert len(cross) >= 5 and set(cross["la_code"]) == set(LAS)
    services = open_home(settings)
    retained = {la: set(read_retained(services, la)["nhs_number"]) for la in LAS}
    gone = cross[[n not in retained[la] for n, la in zip(cross["nhs_number"], cross["la_code"], strict=True)]]
    assert len(gone) >= 1
    assert all(n in retained[la] for n, la in zip(nowhere["nhs_number"], nowhere["la_code"], strict=True))
    removed = 0
    for la, other in ((LAS[0], LAS[1]), (LAS[1], LAS[0])):
        text = files.ledger_file(settings, la).read_text()
        entry = next(e for e in map(json.loads, text.splitlines()) if e["event"] == "cross_la_check")
        facts = entry["facts"]
        assert set(facts) == CROSS_LA_FACTS and isinstance(facts["removed"], int)
        for key in ("found_on_other_la_register", "possibly_on_other_la_register", "moved_to_other_la"):
            assert set(facts[key]) <= {other} and all(isinstance(n, int) for n in facts[key].values())
        assert sum(facts["found_on_other_la_register"].values()) + sum(facts["moved_to_other_la"].values()) == facts["removed"]
        removed += facts["removed"]
        assert not any(n in text for n in truth["nhs_number"])
        assert not any(f'"{s}"' in text for s in people["surname"]) and not any(d in text for d in people["dob"])
    assert removed >= len(gone) >= 1
