"""The daily retention DAG, run for real: expired children are purged with evidence, others kept.

Two deliveries are minimised in one home: one as if 200 days ago (its unmatched children are past
their 90-day retention and its `possible` children past their 14-day review), one today. A real
``cme_retention`` run (``dag.test()`` on the embedded metadata DB) must purge exactly the first,
record what it purged in the ledger, checkpoint it, and leave evidence that verifies against
Airflow's own history.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_minimise import MIN_LA, MatchedDelivery, home_settings
from softhsm import use_keystore

from cme_pipeline import evidence
from cme_pipeline.evidence import ledger
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise as m

pytestmark = pytest.mark.airflow

RUN_RETENTION = r"""
import json, sys
from cme_pipeline import embedded_airflow
from cme_pipeline.config import load_settings
from cme_pipeline.home import open_home
settings = load_settings(sys.argv[1])  # CME_KEYSTORE from the test's environment
embedded_airflow.prepare(settings)
result = embedded_airflow.run_dag(settings, "cme_retention", {})
print(json.dumps({"run_id": result.run_id, "state": result.state, "tasks": result.task_states}))
"""


def test_the_retention_dag_purges_only_what_expired(
    tmp_path: Path, matched_delivery: MatchedDelivery, keystore_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CME_DATABASE_URL", raising=False)
    settings = home_settings(tmp_path / "home", keystore=use_keystore(monkeypatch, keystore_backend))
    today = dt.date.today()
    old, new = "D20260401-W06000015-00000001", "D20261001-W06000015-00000002"
    for delivery, run, day in ((old, "manual__old", today - dt.timedelta(days=200)), (new, "manual__new", today)):
        m.stage_delivery(open_home(settings), MIN_LA, delivery, matched_delivery.extract)
        m.minimise(open_home(settings), MIN_LA, delivery, run, matched_delivery.outcomes, today=day)
    assert set(m.list_retained(open_home(settings), MIN_LA)["delivery_id"]) == {new}  # expired: never read
    before = m.list_retained(open_home(settings), MIN_LA, today=today - dt.timedelta(days=200))  # as it was then
    expired = before[before["delivery_id"] == old]
    assert len(expired) > 0 and (before["delivery_id"] == new).sum() == len(expired)

    done = subprocess.run([sys.executable, "-c", RUN_RETENTION, str(settings.home)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["state"] == "success", result["tasks"]
    assert sum(1 for t in result["tasks"] if t.startswith("purge[")) == 22  # one mapped task per LA

    after = m.list_retained(open_home(settings), MIN_LA)
    assert set(after["delivery_id"]) == {new}
    assert after.reset_index(drop=True).equals(before[before["delivery_id"] == new].reset_index(drop=True))
    purged = [e for e in ledger.read_entries(settings, MIN_LA) if e["event"] == "purged"]
    assert [e["run_id"] for e in purged] == [result["run_id"]]
    facts = purged[0]["facts"]
    assert facts["purged_retained"] == int((expired["outcome"] == "unmatched").sum())
    assert facts["purged_possible"] == int((expired["outcome"] == "possible").sum())
    report = evidence.verify(settings, open_home(settings).keys)
    assert report.ok and report.airflow_runs == 1, report.problems
