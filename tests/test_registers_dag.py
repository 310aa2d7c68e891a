"""cme_registers, run for real: exports dropped in an LA's registers inbox are imported or refused.

One simulated home (its CME register made 300 days old, so its delivery waits) gets four drops:
a good EHE export with the LA's own headings, UK dates and a sensitive column nothing may read;
an EOTAS export with a date of birth missing on one row; a fresh CME export read through the LA's
mapping file; and a file not named after a register. One real ``cme_registers`` run
(``dag.test()`` on the embedded metadata DB, in a child process as the other DAG tests do) must
import the first and third, refuse the second with a ``.problems.txt`` and no change, shred all
three, leave the fourth alone, and let the held-back LA be planned again.

Settings use the ``file:`` key store, built like ``tests/test_retention_dag.py``, not the
``settings`` fixture: that runs every test on both key-store backends, which would run Airflow
twice for wiring that never touches a key store directly (``tests/test_keystore.py`` covers both).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cme_pipeline import evidence
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.embedded_airflow import DAGS_FOLDER, airflow_environment
from cme_pipeline.errors import CmeError
from cme_pipeline.evidence import ledger
from cme_pipeline.home import close_homes, open_home
from cme_pipeline.pipeline import register_steps, steps
from cme_pipeline.simulate.wales import simulate_to_home
from cme_pipeline.store import load_register, register_loads_of, replace_register

LA = "W06000015"  # Cardiff
SENTINEL = "SENTINEL-safeguarding-7f3a9c"  # in a column no mapping reads: must never reach the home
GOOD, BAD, MAPPED = "ehe-2026-11.csv", "EOTAS.csv", "cme.csv"
BAD_ROW = 4  # the file's line: heading on line 1, so the third record
UNNAMED = "referrals to check.csv"

PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
matching, registers = bag.dags.get("cme_matching"), bag.dags.get("cme_registers")
task = registers.get_task("import_export") if registers else None
print(json.dumps({
    "errors": {k: v.splitlines()[-1] for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "matching_assets": sorted(a.uri for a in getattr(matching.timetable.asset_condition, "objects", [])),
    "outlets": [o.uri for o in task.outlets] if task else [],
    "one_at_a_time": task.max_active_tis_per_dagrun if task else None,
}))
"""

RUN_REGISTERS = r"""
import json, sys
from cme_pipeline import embedded_airflow
from cme_pipeline.config import load_settings
settings = load_settings(sys.argv[1], environ={})
embedded_airflow.prepare(settings)
result = embedded_airflow.run_dag(settings, "cme_registers", {"la_codes": [sys.argv[2]]})
from sqlalchemy import select
from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
from airflow.utils.session import create_session
with create_session() as session:
    events = session.execute(select(AssetModel.uri, AssetEvent.source_map_index)
                             .join(AssetModel, AssetEvent.asset_id == AssetModel.id)).all()
    queued = session.scalars(select(AssetDagRunQueue.target_dag_id)).all()
print(json.dumps({"run_id": result.run_id, "state": result.state, "tasks": result.task_states,
                  "events": [[uri, i] for uri, i in events], "queued": sorted(queued)}))
"""


@dataclass(frozen=True)
class RegistersRun:
    """The home after one cme_registers run, and what was there before it."""

    settings: Settings
    before: dict[str, pd.DataFrame]
    planned_before: list[str]
    bad_values: set[str]
    mtime: float
    result: dict[str, Any]
    console: str  # what the run printed: dag.test() logs every task there


def _uk(iso: object) -> str:
    return dt.date.fromisoformat(str(iso)).strftime("%d/%m/%Y") if iso else ""


def _write_csv(path: Path, headings: list[str], rows: list[list[Any]]) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headings)
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


def _ehe_export(frame: pd.DataFrame, path: Path) -> None:
    """The EHE register as a case-management report: its own headings, dd/mm/yyyy, one extra column."""
    headings = ["Case Ref", "First Name", "Middle Names", "Last Name", "Date of Birth", "Gender", "Address",
                "Post Code", "Date Notified", "Safeguarding Notes"]
    rows = [[r.record_id, r.forename, r.middle_names or "", r.surname, _uk(r.dob), r.sex or "", r.address or "",
             r.postcode or "", _uk(r.notified_date), SENTINEL] for r in frame.itertuples(index=False)]
    _write_csv(path, headings, rows)


def _eotas_export(frame: pd.DataFrame, path: Path) -> set[str]:
    """The EOTAS register with the third record's date of birth empty; returns the file's values."""
    columns = list(frame.columns)
    rows = [["" if v is None else str(v) for v in r] for r in frame.itertuples(index=False)]
    rows[BAD_ROW - 2][columns.index("dob")] = ""
    _write_csv(path, columns, rows)
    return {v for r in rows for v in r if len(v) >= 3}


def _cme_export(settings: Settings, frame: pd.DataFrame, path: Path) -> None:
    """The CME register under headings no preset knows, read through the LA's mapping file."""
    mapping = settings.la_dir(LA) / "registers_mapping" / "cme.toml"
    mapping.parent.mkdir(parents=True, exist_ok=True)
    mapping.write_text('register = "cme"\ndate_format = "%d.%m.%Y"\n[columns]\nrecord_id = "Child No"\n'
                       'forename = "Given"\nsurname = "Family"\ndob = "Born"\nreferral_date = "Referred On"\n')
    rows = [[r.record_id, r.forename, r.surname, dt.date.fromisoformat(str(r.dob)).strftime("%d.%m.%Y"),
             dt.date.fromisoformat(str(r.referral_date)).strftime("%d.%m.%Y")] for r in frame.itertuples(index=False)]
    _write_csv(path, ["Child No", "Given", "Family", "Born", "Referred On"], rows)


def _plan(settings: Settings) -> list[str]:
    """``steps.plan`` as cme_matching's first task runs it (settings from the environment)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CME_HOME", str(settings.home))
        for name in ("CME_KEYSTORE", "CME_DATABASE_URL", "CME_AIRFLOW_DATABASE_URL"):
            env.delenv(name, raising=False)
        return steps.plan({"la_codes": [LA]})


@pytest.fixture(scope="module")
def registers_run(tmp_path_factory: pytest.TempPathFactory) -> RegistersRun:
    settings = load_settings(tmp_path_factory.mktemp("registers") / "home", environ={})
    simulate_to_home(settings, [LA], children=300, seed=23)
    engine = open_home(settings).store(LA)
    before = {s: load_register(engine, LA, s) for s in ("ehe", "eotas", "cme")}
    replace_register(engine, LA, "cme", before["cme"], as_of=dt.date.today() - dt.timedelta(days=300))
    planned_before = _plan(settings)

    inbox = settings.registers_inbox(LA)
    inbox.mkdir(parents=True)
    _ehe_export(before["ehe"], inbox / GOOD)
    bad_values = _eotas_export(before["eotas"], inbox / BAD)
    _cme_export(settings, before["cme"], inbox / MAPPED)
    (inbox / UNNAMED).write_text("Case Ref\nX1\n")
    (inbox / ".ehe.csv.part").write_text("still copying")
    mtime = time.time() - 120  # copied in two minutes ago: settled
    for path in inbox.iterdir():
        os.utime(path, (mtime, mtime))
    close_homes()  # the child process opens the store itself

    done = subprocess.run([sys.executable, "-c", RUN_REGISTERS, str(settings.home), LA],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return RegistersRun(settings, before, planned_before, bad_values, mtime, result, done.stdout + done.stderr)


def _cells(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    """Rows as text, an empty cell and a missing value alike (the store keeps one, an import the other)."""
    return [tuple("" if pd.isna(v) else str(v) for v in row) for row in frame.itertuples(index=False)]


def _imports(run: RegistersRun) -> dict[str, str]:
    return {k: v for k, v in run.result["tasks"].items() if k.startswith("import_export[")}


@pytest.mark.airflow
def test_the_dag_files_parse_and_matching_waits_on_both_assets(tmp_path: Path) -> None:
    env = airflow_environment(load_settings(tmp_path, environ={})) | {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(DAGS_FOLDER)], env=env, capture_output=True,
                          text=True, check=True)
    bag = json.loads(done.stdout.strip().splitlines()[-1])
    assert bag["errors"] == {}
    assert "cme_registers" in bag["dags"]
    assert bag["matching_assets"] == ["cme://deliveries/", "cme://registers/"]
    assert bag["outlets"] == ["cme://registers/"] and bag["one_at_a_time"] == 1


@pytest.mark.airflow
def test_a_good_export_replaces_its_register(registers_run: RegistersRun) -> None:
    run, settings = registers_run, registers_run.settings
    assert run.result["state"] == "failed"  # the refused export failed its task, and so the run
    assert sorted(_imports(run).values()) == ["failed", "success", "success"], run.result["tasks"]
    engine = open_home(settings).store(LA)
    after = load_register(engine, LA, "ehe")
    assert list(after.columns) == list(run.before["ehe"].columns)
    assert _cells(after) == _cells(run.before["ehe"])
    load = register_loads_of(engine, LA)["ehe"]
    assert (load.rows, load.origin, load.as_of) == (len(after), "file", dt.date.fromtimestamp(run.mtime))
    imported = [e for e in ledger.read_entries(settings, LA) if e["event"] == "registers_imported"]
    assert sorted((e["facts"]["register"], e["run_id"]) for e in imported) == [
        ("cme", run.result["run_id"]), ("ehe", run.result["run_id"])]
    ehe = next(e["facts"] for e in imported if e["facts"]["register"] == "ehe")
    assert ehe["rows"] == ehe["replaced_rows"] == len(after) and ehe["columns_dropped"] == 1


@pytest.mark.airflow
def test_a_refused_export_leaves_its_register_and_says_why(registers_run: RegistersRun) -> None:
    run, settings = registers_run, registers_run.settings
    after = load_register(open_home(settings).store(LA), LA, "eotas")
    assert _cells(after) == _cells(run.before["eotas"])
    refused = [e for e in ledger.read_entries(settings, LA) if e["event"] == "registers_refused"]
    assert [(e["facts"]["register"], e["facts"]["problems"], e["run_id"]) for e in refused] == [
        ("eotas", 1, run.result["run_id"])]
    problems = settings.registers_inbox(LA) / f"{BAD}.problems.txt"
    assert problems.stat().st_mode & 0o777 == 0o600
    text = problems.read_text()
    assert f"- column dob (heading 'dob'): empty at row {BAD_ROW} (every record needs it)" in text
    assert not [v for v in run.bad_values if v in text]  # names column and row, never a value


@pytest.mark.airflow
def test_every_export_leaves_the_inbox_and_no_unread_value_reaches_the_home(registers_run: RegistersRun) -> None:
    settings = registers_run.settings
    left = {p.name for p in settings.registers_inbox(LA).iterdir()}
    assert left == {f"{BAD}.problems.txt", UNNAMED, ".ehe.csv.part"}  # imported and refused alike are shredded
    for path in settings.home.rglob("*"):  # store, ledger, Airflow's DB, XComs and task logs
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path.relative_to(settings.home)


@pytest.mark.airflow
def test_the_run_logs_no_value_of_an_export(registers_run: RegistersRun) -> None:
    frames = registers_run.before.values()
    values = {str(v) for f in frames for c in ("record_id", "surname", "dob", "postcode") for v in f[c] if v}
    values |= {_uk(v) for f in frames for v in f["dob"]}  # as the EHE export wrote them
    assert len(values) > 30
    found = [v for v in values | {SENTINEL} if re.search(rf"\b{re.escape(v)}\b", registers_run.console)]
    assert found == []
    assert "EOTAS.csv refused, 1 problem(s)" in registers_run.console  # what the failed task says instead


@pytest.mark.airflow
def test_each_import_updates_the_registers_asset_and_queues_matching(registers_run: RegistersRun) -> None:
    result = registers_run.result
    imported = sorted(int(k[len("import_export["):-1]) for k, v in _imports(registers_run).items() if v == "success")
    assert sorted(i for uri, i in result["events"] if uri == "cme://registers/") == imported
    assert result["queued"] == ["cme_matching"]


@pytest.mark.airflow
def test_an_la_held_back_by_a_stale_register_is_planned_after_a_fresh_import(registers_run: RegistersRun) -> None:
    run = registers_run
    assert run.planned_before == []  # its delivery waited for a fresh CME register
    load = register_loads_of(open_home(run.settings).store(LA), LA)["cme"]
    assert load.as_of == dt.date.fromtimestamp(run.mtime) and load.rows == len(run.before["cme"])
    assert _plan(run.settings) == [LA]


@pytest.mark.airflow
def test_the_imports_verify_against_airflows_history(registers_run: RegistersRun) -> None:
    settings = registers_run.settings
    report = evidence.verify(settings, open_home(settings).keys)
    assert report.ok, report.problems


def test_waiting_exports_are_named_by_register_oldest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(tmp_path / "home", environ={})
    monkeypatch.setenv("CME_HOME", str(settings.home))
    inbox = settings.registers_inbox(LA)
    inbox.mkdir(parents=True)
    (tmp_path / "elsewhere.csv").write_text("x")
    (inbox / "cme.csv").symlink_to(tmp_path / "elsewhere.csv")  # shredding it would shred its target
    ages = {"ehe.csv": 200, "School_Census-autumn term.XLSX": 300, "eotas-2.tsv": 100, "ehe.csv.problems.txt": 400,
            ".eotas.csv.1234.tmp": 400, "eotas.xls": 400, "Smith family.csv": 400, "cme-copying.csv": 5}
    for name, age in ages.items():
        (inbox / name).write_text("x")
        os.utime(inbox / name, (time.time() - age, time.time() - age))
    with caplog.at_level("INFO"):
        waiting = register_steps.waiting_exports({"la_codes": [LA, "W06000001"]})
    assert waiting == [{"la_code": LA, "file": f} for f in ("School_Census-autumn term.XLSX", "ehe.csv", "eotas-2.tsv")]
    assert "3 file(s) in the registers inbox" in caplog.text and "Smith" not in caplog.text
    assert "1 export(s) changed in the last minute" in caplog.text
    assert (tmp_path / "elsewhere.csv").read_text() == "x"


@pytest.mark.parametrize("name", ["../ehe.csv", "ehe.csv.problems.txt", "notes.csv"])
def test_only_an_export_in_the_inbox_is_imported(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_HOME", str(tmp_path / "home"))
    with pytest.raises(CmeError, match="not the name of a register export"):
        register_steps.import_export(LA, name, "manual__1")
