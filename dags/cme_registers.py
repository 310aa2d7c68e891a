"""cme_registers: import the register exports analysts drop in each LA's registers inbox.

Wiring only; the steps are functions in ``cme_pipeline.pipeline.register_steps``. Every working
hour (or when triggered; ``cme registers import`` does the same from the command line) it lists
the exports waiting and imports each in its own mapped task, one at a time and oldest first, so
the newest export of a register is the one that stays. Every import updates the registers Asset,
which starts cme_matching for a delivery that was waiting for fresh registers. A refused export
fails its task at once (no retry); its problems are in ``<file>.problems.txt`` in the inbox.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, CronTriggerTimetable, Param, dag, task

from cme_pipeline.areas import LA_CODES
from cme_pipeline.config import task_retry_delay
from cme_pipeline.pipeline import REGISTERS_ASSET_NAME, REGISTERS_ASSET_URI, register_steps

REGISTERS = Asset(name=REGISTERS_ASSET_NAME, uri=REGISTERS_ASSET_URI)


@dag(
    dag_id="cme_registers",
    schedule=CronTriggerTimetable("0 7-19 * * 1-5", timezone="Europe/London"),
    start_date=pendulum.datetime(2026, 9, 1, tz="Europe/London"),
    catchup=False,
    max_active_runs=1,  # two runs must never import the same export
    default_args={"retries": 1, "retry_delay": task_retry_delay()},
    params={
        "la_codes": Param(list(LA_CODES), type="array", items={"type": "string", "enum": list(LA_CODES)},
                          minItems=1, uniqueItems=True, description="ONS codes of the LAs whose inboxes to read"),
    },
    tags=["cme"],
    doc_md=__doc__,
)
def cme_registers() -> None:
    @task(doc_md=register_steps.waiting_exports.__doc__)
    def plan(params: dict[str, object] | None = None) -> list[dict[str, str]]:
        return register_steps.waiting_exports(params or {})

    # One at a time: the scheduler queues a mapped task's instances by map index (a retry
    # aside), so a newer export of a register replaces an older one, not the other way round.
    @task(outlets=[REGISTERS], max_active_tis_per_dagrun=1, doc_md=register_steps.import_export.__doc__)
    def import_export(la_code: str, file: str, run_id: str | None = None) -> dict[str, object]:
        from airflow.sdk.exceptions import AirflowFailException

        from cme_pipeline.la.register_import import RegisterRefused

        try:
            return register_steps.import_export(la_code, file, run_id)
        except RegisterRefused as exc:  # the message names register and file, never a value
            raise AirflowFailException(str(exc)) from None

    import_export.expand_kwargs(plan())


cme_registers()
