"""The audit of DAG runs: Airflow's history joined with each LA's outcome and the evidence status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cme_pipeline.config import Settings
from cme_pipeline.crypto import KeyStore
from cme_pipeline.evidence.airflow_history import AirflowRun, load_runs, run_las
from cme_pipeline.evidence.ledger import read_entries
from cme_pipeline.evidence.verify import VerifyReport, evidence_las, verify
from cme_pipeline.runs import la_outcome

COLUMNS = ("run_id", "dag_id", "trigger", "triggered_by", "start", "end", "state", "la_outcomes", "evidence")


@dataclass(frozen=True)
class AuditRow:
    """One DAG run as the audit shows it: ids, times, states and outcomes only."""

    run_id: str
    dag_id: str
    trigger: str
    triggered_by: str
    start: str
    end: str
    state: str
    la_outcomes: str
    evidence: str

    def as_dict(self) -> dict[str, str]:
        """The row as a mapping in column order."""
        return {c: getattr(self, c) for c in COLUMNS}


def audit_runs(settings: Settings, keys: KeyStore) -> list[AuditRow] | None:
    """Every run of our DAGs with its outcome per LA and evidence status; None without history.

    Args:
        settings: the home.
        keys: the key store holding each LA's evidence verification key.
    """
    history = load_runs(settings)
    if history is None:
        return None
    report = verify(settings, keys)
    ledger_runs: dict[str, set[str]] = {}
    for code in evidence_las(settings):
        for entry in read_entries_safely(settings, code):
            ledger_runs.setdefault(str(entry.get("run_id")), set()).add(code)
    return [_row(settings, run, report, ledger_runs.get(run.run_id, set())) for run in history]


def read_entries_safely(settings: Settings, la_code: str) -> list[dict[str, Any]]:
    """The LA's entries, or none if the ledger is unreadable (``verify`` reports why)."""
    from cme_pipeline.errors import CmeError

    try:
        return read_entries(settings, la_code)
    except CmeError:
        return []


def _row(settings: Settings, run: AirflowRun, report: VerifyReport, in_ledger: set[str]) -> AuditRow:
    outcomes = []
    for code in run_las(settings, run):
        status = la_outcome(settings, code, run.run_id).status
        if status == "failed" and not run.finished:
            status = "in progress"
        outcomes.append(f"{code}:{status}")
    who = run.triggered_by or "-"
    user = run.triggering_user or str(run.conf.get("owner") or run.conf.get("triggered_by") or "")
    if user:
        who = f"{who} ({user})"
    return AuditRow(
        run_id=run.run_id,
        dag_id=run.dag_id,
        trigger=run.trigger,
        triggered_by=who,
        start=run.start.isoformat(timespec="seconds") if run.start else "",
        end=run.end.isoformat(timespec="seconds") if run.end else "",
        state=run.state,
        la_outcomes=" ".join(outcomes) or "-",
        evidence=_status(run, report, in_ledger),
    )


def _status(run: AirflowRun, report: VerifyReport, in_ledger: set[str]) -> str:
    mine = [p for p in report.problems if run.run_id in p]
    # A problem naming no run (a broken chain, a bad checkpoint) puts every run's evidence in doubt.
    shared = [p for p in report.problems if not any(c in p for c in ("run ", "certificate "))]
    if mine or (in_ledger and shared):
        return f"problems ({len(mine) + len(shared)})"
    if not in_ledger:
        return "no evidence (nothing processed)" if run.finished else "in progress"
    return "verified"
