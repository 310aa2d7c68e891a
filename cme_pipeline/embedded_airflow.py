"""Run our DAGs in-process on the embedded default: Airflow's SQLite metadata DB under the home.

This is the one module outside ``dags/`` that imports Airflow, and only inside functions: the
``cme run``/``cme airflow`` commands need it, the library proper does not.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cme_pipeline.config import Settings

DAGS_FOLDER = Path(__file__).resolve().parent.parent / "dags"
PLUGINS_FOLDER = DAGS_FOLDER.parent / "plugins"  # plugins/cme_pages.py: the DPO's, auditor's and analyst's pages
# Airflow's SimpleAuthManager users of the embedded default, one per role (README, "The Airflow UI"):
# the analyst triggers runs (Airflow's `user` role), the DPO and the auditor only read (`viewer`);
# which CME page each may open is `cme_pipeline.ui.access`.
SIMPLE_AUTH_MANAGER_USERS = "admin:admin,analyst:user,dpo:viewer,auditor:viewer"


def airflow_environment(settings: Settings) -> dict[str, str]:
    """The environment Airflow needs for this home (set before Airflow is first imported).

    Args:
        settings: the home and database settings.
    """
    env = {
        "AIRFLOW_HOME": str(settings.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": SIMPLE_AUTH_MANAGER_USERS,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.airflow_metadata_url(),
        # Rendered template fields and XComs must never hold personal data; we also keep them
        # small so a leak would be visible in review rather than buried.
        "AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH": "256",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(settings.airflow_home / "logs"),
        # Airflow chmods its task logs itself (0o664/0o775 by default), past any umask.
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS": "0o600",
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS": "0o700",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "CME_HOME": str(settings.home),
        # Tasks (in-process, or a worker Airflow starts) must find the same keys as this command.
        "CME_KEYSTORE": settings.keystore_uri,
    }
    if env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://"):
        # Airflow derives its async URL by swapping in asyncpg; psycopg 3 does both, one driver.
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    if settings.database_url:
        env["CME_DATABASE_URL"] = settings.database_url
    if settings.airflow_database_url:
        env["CME_AIRFLOW_DATABASE_URL"] = settings.airflow_database_url
    return env


def prepare(settings: Settings, quiet: bool = True) -> None:
    """Point Airflow at the home and create or upgrade its metadata database.

    Args:
        settings: the home.
        quiet: keep Airflow's own info logs off the console (our progress lines stay).
    """
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    os.environ.update(airflow_environment(settings))
    if quiet:
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    from airflow.utils import db

    db.upgradedb()


@dataclass(frozen=True)
class DagRunResult:
    """What a finished DAG run reports: ids and states only."""

    run_id: str
    state: str
    task_states: dict[str, str]  # "<task_id>[<map_index>]" -> state


def run_dag(settings: Settings, dag_id: str, conf: dict[str, Any], logical_date: dt.datetime | None = None) -> DagRunResult:
    """Run one DAG now, in-process, with ``dag.test()``.

    Args:
        settings: the home (``prepare`` must have been called).
        dag_id: which DAG.
        conf: the run's Params (validated by Airflow against the DAG's Param schema).
        logical_date: the run's logical date (default: now); it names the run, so runs started
            at the same moment by parallel workers are given distinct ones.
    """
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if dag_id not in bag.dags:
        errors = "; ".join(f"{Path(k).name}: {v.splitlines()[-1] if v else ''}" for k, v in bag.import_errors.items())
        raise RuntimeError(f"DAG {dag_id} did not load ({errors or 'not found'})")
    dag_run = bag.dags[dag_id].test(run_conf=conf, logical_date=logical_date or dt.datetime.now(dt.UTC))
    states = {
        f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()
    }
    return DagRunResult(run_id=dag_run.run_id, state=str(dag_run.state), task_states=states)


def sync_dags() -> None:
    """Write the DAG bundle and our parsed DAGs to the metadata DB now, as ``dag.test()`` does first.

    Parallel workers (``embedded_workers``) each start with ``dag.test()``, whose first act is
    this sync: on a fresh metadata DB two of them would both insert the bundle's row. Done once
    before they start, theirs finds everything in place and writes nothing new.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    manager = DagBundlesManager()
    with create_session() as session:
        manager.sync_bundles_to_db(session=session)
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, bundle.version)


def console_log(settings: Settings) -> Path:
    """Where Airflow's own console output goes during an embedded run."""
    return settings.airflow_home / "logs" / "embedded-console.log"


@contextmanager
def airflow_console_to_file(settings: Settings) -> Iterator[Path]:
    """Send what Airflow prints while it runs (task logs, a failed task's traceback, warnings) to a file.

    ``dag.test()`` runs tasks in this process and logs them to the console; an analyst should see
    our progress lines and one line per problem, not Airflow's tracebacks of an expected
    rejection. Tasks log ids and counts only, so the file holds what the task logs hold.

    Args:
        settings: the home (the file is under ``airflow/logs/``).
    """
    path = console_log(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "ab") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield path
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])
