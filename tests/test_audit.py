"""Evidence against Airflow's own history: `verify` cross-checks and `cme audit runs`.

One real `cme_matching` run (nothing waiting, so it succeeds with no LA work) gives a real
metadata database; each test builds evidence for that run id in a fresh home that reads it.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures_evidence import LA, write_run

from cme_pipeline import evidence as proof
from cme_pipeline.cli import main
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.evidence import files
from cme_pipeline.evidence.audit import audit_runs
from cme_pipeline.home import open_home
from cme_pipeline.runs import RunPaths, update_state

RUN_ONE_DAG = r"""
import json, sys
from cme_pipeline import embedded_airflow
from cme_pipeline.config import load_settings
from cme_pipeline.home import open_home
settings = load_settings(sys.argv[1], environ={})
embedded_airflow.prepare(settings)
result = embedded_airflow.run_dag(settings, "cme_matching", {"la_codes": ["W06000015"]})
print(json.dumps({"run_id": result.run_id, "state": result.state}))
"""


@pytest.fixture(scope="module")
def airflow_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(metadata DB URL, run id) of one finished cme_matching run."""
    home = tmp_path_factory.mktemp("airflow_home")
    done = subprocess.run([sys.executable, "-c", RUN_ONE_DAG, str(home)], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["state"] == "success"
    return load_settings(home, environ={}).airflow_metadata_url(), result["run_id"]


@pytest.fixture
def with_airflow(settings: Settings, airflow_run: tuple[str, str]) -> tuple[Settings, str]:
    """A fresh home whose Airflow history is the module's real run."""
    url, run_id = airflow_run
    return replace(settings, airflow_database_url=url), run_id


def _completed(settings: Settings, run_id: str, la_code: str = LA) -> None:
    write_run(settings, run_id, la_code, report=False)
    update_state(RunPaths(settings, la_code, run_id), delivery_id="D1", completed=True)


def test_evidence_of_a_real_airflow_run_verifies(with_airflow: tuple[Settings, str]) -> None:
    settings, run_id = with_airflow
    _completed(settings, run_id)
    report = proof.verify(settings, open_home(settings).keys)
    assert report.ok, report.problems
    assert report.airflow_runs == 1


def test_a_run_airflow_never_had_is_named(with_airflow: tuple[Settings, str]) -> None:
    settings, run_id = with_airflow
    _completed(settings, run_id)
    write_run(settings, "manual__2026-01-01T00:00:00+00:00", report=False)
    problems = proof.verify(settings, open_home(settings).keys).problems
    assert problems == [f"{LA} run manual__2026-01-01T00:00:00+00:00 in ledger but Airflow has no such run"]


def test_a_finished_run_without_its_certificate_is_named(with_airflow: tuple[Settings, str]) -> None:
    settings, run_id = with_airflow
    _completed(settings, run_id)
    files.certificate_file(settings, LA, run_id).unlink()
    problems = proof.verify(settings, open_home(settings).keys).problems
    assert f"Airflow run {run_id} finished but has no certificate for LA {LA}" in problems


def test_a_finished_run_missing_from_an_las_ledger_is_named(with_airflow: tuple[Settings, str]) -> None:
    settings, run_id = with_airflow
    _completed(settings, run_id)
    update_state(RunPaths(settings, "W06000002", run_id), delivery_id="D2", completed=True)
    write_run(settings, "unrelated", "W06000002", report=False)
    problems = proof.verify(settings, open_home(settings).keys, la_codes=["W06000002", LA]).problems
    assert f"Airflow run {run_id} finished but LA W06000002's ledger has no entries for it" in problems


def test_audit_rows_join_airflow_history_outcomes_and_evidence(with_airflow: tuple[Settings, str]) -> None:
    settings, run_id = with_airflow
    _completed(settings, run_id)
    (row,) = audit_runs(settings, open_home(settings).keys) or []
    assert (row.run_id, row.dag_id, row.trigger, row.state) == (run_id, "cme_matching", "manual", "success")
    assert row.triggered_by == "test (dag_test)"
    assert row.la_outcomes == f"{LA}:completed" and row.evidence == "verified"
    assert row.start and row.end and row.start <= row.end
    files.ledger_file(settings, LA).write_bytes(files.ledger_file(settings, LA).read_bytes().replace(b'"rows":1000', b'"rows":1001'))
    (row,) = audit_runs(settings, open_home(settings).keys) or []
    assert row.evidence.startswith("problems")


def test_audit_of_a_run_with_nothing_processed(with_airflow: tuple[Settings, str]) -> None:
    settings, _ = with_airflow
    (row,) = audit_runs(settings, open_home(settings).keys) or []
    assert row.la_outcomes == "-" and row.evidence == "no evidence (nothing processed)"


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_cme_audit_runs_formats(with_airflow: tuple[Settings, str], fmt: str, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    settings, run_id = with_airflow
    _completed(settings, run_id)
    assert settings.airflow_database_url is not None
    monkeypatch.setenv("CME_AIRFLOW_DATABASE_URL", settings.airflow_database_url)
    assert main(["--home", str(settings.home), "audit", "runs", "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        (row,) = json.loads(out)
        assert row["run_id"] == run_id and row["evidence"] == "verified"
    elif fmt == "csv":
        (row,) = list(csv.DictReader(io.StringIO(out)))
        assert row["la_outcomes"] == f"{LA}:completed" and row["state"] == "success"
    else:
        header, line = out.splitlines()
        assert header.split()[:3] == ["run_id", "dag_id", "trigger"] and line.startswith(run_id)


def test_no_airflow_history_yet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(tmp_path), "audit", "runs"]) == 0
    assert capsys.readouterr().out == "no Airflow history yet\n"
    assert not (tmp_path / "airflow" / "airflow.db").exists()  # the audit created nothing
