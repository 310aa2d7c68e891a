"""cme_retention: every day, purge retained records past their retention date and `possible`
records past their review date, with evidence. Wiring only; see ``cme_pipeline.pipeline.steps``."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from cme_pipeline.areas import LA_CODES
from cme_pipeline.config import task_retry_delay
from cme_pipeline.pipeline import steps


@dag(
    dag_id="cme_retention",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 9, 1, tz="Europe/London"),
    catchup=False,
    max_active_runs=1,
    # Purging is idempotent, so a task that lost its worker (e.g. a slow start on a busy small
    # machine) simply runs again; a few LAs at a time keep the embedded SQLite default calm.
    max_active_tasks=4,
    default_args={"retries": 2, "retry_delay": task_retry_delay()},
    tags=["cme"],
    doc_md=__doc__,
)
def cme_retention() -> None:
    @task(doc_md="Purge one LA's expired retained and review records; record counts in the ledger.")
    def purge(la_code: str, params: dict[str, object] | None = None, run_id: str | None = None) -> dict[str, object]:
        return steps.purge(la_code, run_id, params)

    purge.expand(la_code=list(LA_CODES))


cme_retention()
