"""DAG integrity: the files parse with no import errors, stay thin, and carry only safe Params."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cme_pipeline.config import load_settings
from cme_pipeline.embedded_airflow import DAGS_FOLDER, airflow_environment

PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: v.splitlines()[-1] for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "doc": bool(dag.doc_md),
        "tasks": {t.task_id: bool(t.doc_md) for t in dag.tasks},
        "params": {k: dict(v.schema) for k, v in dag.params.items()},
        "mapped": sorted(t.task_id for t in dag.tasks if t.get_closest_mapped_task_group() is not None),
        "retry_delays": sorted({t.retry_delay.total_seconds() for t in dag.tasks if t.retries}),
    }
heavy = ("pandas", "great_expectations", "rapidfuzz", "cme_pipeline.matching", "cme_pipeline.store")
out["heavy"] = [m for m in heavy if m in sys.modules]
print(json.dumps(out))
"""


def _parse(home: Path, extra: dict[str, str] | None = None) -> dict[str, object]:
    env = airflow_environment(load_settings(home, environ={})) | {"PATH": "/usr/bin:/bin"} | (extra or {})
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS_FOLDER)], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return _parse(tmp_path_factory.mktemp("home"))


def test_no_import_errors(dagbag: dict[str, object]) -> None:
    assert dagbag["errors"] == {}
    assert set(dagbag["dags"]) == {"cme_matching", "cme_registers", "cme_retention", "cme_cross_la", "nhs_partner_simulator"}  # type: ignore[arg-type]


def test_no_heavy_imports_at_parse_time(dagbag: dict[str, object]) -> None:
    # pandas, GX, rapidfuzz and our store are imported inside tasks, never when a DAG file is parsed.
    assert dagbag["heavy"] == []


def test_every_dag_and_task_is_documented(dagbag: dict[str, object]) -> None:
    for dag_id, dag in dagbag["dags"].items():  # type: ignore[attr-defined]
        assert dag["doc"], dag_id
        assert all(dag["tasks"].values()), (dag_id, dag["tasks"])


def test_matching_is_mapped_per_la_with_every_step(dagbag: dict[str, object]) -> None:
    dag = dagbag["dags"]["cme_matching"]  # type: ignore[index]
    steps = ["open_delivery", "check_registers", "match", "minimise", "check_retained", "evidence", "abandon"]
    assert set(dag["tasks"]) == {"plan"} | {f"per_la.{s}" for s in steps}
    assert set(dag["mapped"]) == {f"per_la.{s}" for s in steps}


def test_params_are_validated_and_hold_no_personal_fields(dagbag: dict[str, object]) -> None:
    params = dagbag["dags"]["cme_matching"]["params"]  # type: ignore[index]
    assert set(params) == {"la_codes", "academic_year", "match_threshold", "possible_threshold"}
    assert params["la_codes"]["items"]["enum"][13] == "W06000015"
    assert params["match_threshold"]["maximum"] == 1
    assert params["match_threshold"]["minimum"] == 0.9  # a typo must not match (and delete) every child


def test_dag_files_are_thin() -> None:
    for path in Path(DAGS_FOLDER).glob("*.py"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert len(lines) < 130, path.name
        assert "import pandas" not in path.read_text().split("def ")[0]


def test_retry_delay_is_30_s_unless_cme_task_retry_delay_says(dagbag: dict[str, object], tmp_path: Path) -> None:
    retried = ("cme_matching", "cme_registers", "cme_retention")
    assert {d: dagbag["dags"][d]["retry_delays"] for d in retried} == {d: [30.0] for d in retried}  # type: ignore[index]
    shortened = _parse(tmp_path / "a", {"CME_TASK_RETRY_DELAY": "2"})
    assert {d: shortened["dags"][d]["retry_delays"] for d in retried} == {d: [2.0] for d in retried}  # type: ignore[index]
    refused = _parse(tmp_path / "b", {"CME_TASK_RETRY_DELAY": "soon"})
    assert set(refused["errors"].values()) == {  # type: ignore[attr-defined]
        "cme_pipeline.errors.ConfigError: CME_TASK_RETRY_DELAY must be a whole number of seconds, at least 1"}
