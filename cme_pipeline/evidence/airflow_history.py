"""Airflow's own run history, read from its metadata database with SQLAlchemy reflection.

The library never imports Airflow (DESIGN.md §2): an audit must not depend on the scheduler it
audits, and must work from a copy of the metadata database. Only ``dag_run`` is read.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cme_pipeline.config import Settings
from cme_pipeline.errors import CmeError
from cme_pipeline.evidence import files
from cme_pipeline.evidence.chain import TERMINAL_EVENTS
from cme_pipeline.evidence.ledger import ANALYST_RUN_PREFIXES
from cme_pipeline.runs import RunPaths, read_state

MATCHING_DAG = "cme_matching"
EVIDENCE_DAGS = ("cme_matching", "cme_retention", "cme_registers")
FINISHED_STATES = frozenset({"success", "failed"})


@dataclass(frozen=True)
class AirflowRun:
    """One DAG run as Airflow recorded it (ids, states, times; no personal data is ever there)."""

    dag_id: str
    run_id: str
    run_type: str
    triggered_by: str
    triggering_user: str
    conf: Mapping[str, Any]
    start: dt.datetime | None
    end: dt.datetime | None
    state: str

    @property
    def finished(self) -> bool:
        """Whether Airflow considers the run over."""
        return self.state in FINISHED_STATES

    @property
    def trigger(self) -> str:
        """manual, scheduled, asset (Airflow's run_type in plain words)."""
        return {
            "manual": "manual", "scheduled": "scheduled", "asset_triggered": "asset",
            "backfill": "backfill", "asset_materialization": "asset",
        }.get(self.run_type, self.run_type)


def load_runs(settings: Settings, dag_ids: Iterable[str] = EVIDENCE_DAGS) -> list[AirflowRun] | None:
    """Every run of the given DAGs, oldest first; None when there is no Airflow history yet.

    Args:
        settings: the home (``airflow_metadata_url``).
        dag_ids: which DAGs.

    Raises:
        CmeError: the database exists but cannot be read (the URL is not repeated: it may hold
            a password).
    """
    url = make_url(settings.airflow_metadata_url())
    if url.get_backend_name() == "sqlite":
        if not url.database or not Path(url.database).is_file():
            return None
        # Read-only: an audit must never create or change Airflow's database.
        url = make_url(f"sqlite:///file:{url.database}?mode=ro&uri=true")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("dag_run"):
                return None
            table = sa.Table("dag_run", sa.MetaData(), autoload_with=conn)
            query = sa.select(table).where(table.c.dag_id.in_(list(dag_ids)))
            order = table.c.start_date if "start_date" in table.c else table.c.id
            rows = conn.execute(query.order_by(order, table.c.id)).mappings().all()
    except SQLAlchemyError as exc:
        raise CmeError(f"cannot read Airflow's metadata database ({type(exc).__name__})") from None
    finally:
        engine.dispose()
    return [_run(dict(row)) for row in rows]


def _run(row: Mapping[str, Any]) -> AirflowRun:
    return AirflowRun(
        dag_id=str(row["dag_id"]),
        run_id=str(row["run_id"]),
        run_type=str(row.get("run_type") or ""),
        triggered_by=_text(row.get("triggered_by")).lower(),
        triggering_user=_text(row.get("triggering_user_name")),
        conf=_conf(row.get("conf")),
        start=_time(row.get("start_date")),
        end=_time(row.get("end_date")),
        state=str(row.get("state") or ""),
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def _conf(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, (str, bytes)):
        try:
            parsed = json.loads(value)
        except ValueError:  # older Airflow pickled conf: never unpickle what we audit
            return {}
        return parsed if isinstance(parsed, Mapping) else {}
    return {}


def _time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def run_las(settings: Settings, run: AirflowRun) -> list[str]:
    """LAs that took part in a run: those with a state file for it (plan order is not kept)."""
    root = settings.home / "la"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if RunPaths(settings, p.name, run.run_id).state_file.is_file())


def cross_check(
    settings: Settings, history: list[AirflowRun], ledgers: Mapping[str, list[dict[str, Any]]],
    run_id: str | None = None,
) -> list[str]:
    """Problems between the ledgers and Airflow's history.

    Args:
        settings: the home.
        history: Airflow's runs of our DAGs.
        ledgers: each LA's ledger entries.
        run_id: only this run, if given.
    """
    problems: list[str] = []
    known = {r.run_id for r in history}
    for la_code, entries in ledgers.items():
        runs = {str(e.get("run_id")) for e in entries
                if e.get("run_id") is not None and not str(e.get("run_id")).startswith(ANALYST_RUN_PREFIXES)}
        for rid in sorted(runs - known):
            if run_id is None or rid == run_id:
                problems.append(f"{la_code} run {rid} in ledger but Airflow has no such run")
    if run_id is not None and run_id not in known:
        problems.append(f"run {run_id}: Airflow has no such run")
    for run in history:
        if run.dag_id != MATCHING_DAG or not run.finished or (run_id is not None and run.run_id != run_id):
            continue
        for la_code in run_las(settings, run):
            if la_code not in ledgers:
                continue
            state = read_state(RunPaths(settings, la_code, run.run_id))
            events = {e.get("event") for e in ledgers[la_code] if e.get("run_id") == run.run_id}
            if not events:
                problems.append(f"Airflow run {run.run_id} finished but LA {la_code}'s ledger has no entries for it")
            elif not events & TERMINAL_EVENTS:
                problems.append(f"Airflow run {run.run_id} finished but LA {la_code}'s ledger records no outcome")
            elif state.get("completed") and not files.certificate_file(settings, la_code, run.run_id).is_file():
                problems.append(f"Airflow run {run.run_id} finished but has no certificate for LA {la_code}")
    return problems
