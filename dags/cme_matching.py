"""cme_matching: match each LA's waiting NHS delivery against its education registers.

Wiring only; every step is a function in ``cme_pipeline.pipeline.steps``, referenced directly, so
a renamed step fails when this file is parsed, not in a run. One mapped task group per LA with a
waiting delivery (mapping is over LA codes, never over records). Tasks hand each other ids and
counts only. It also runs whenever cme_registers imports a register, so a delivery held back by
stale registers is matched as soon as fresh ones land.
"""

from __future__ import annotations

from collections.abc import Callable

import pendulum
from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    TriggerRule,
    chain,
    dag,
    task,
    task_group,
)

from cme_pipeline.areas import LA_CODES
from cme_pipeline.config import MATCH_THRESHOLD_FLOOR, task_retry_delay
from cme_pipeline.pipeline import (
    DELIVERY_ASSET_NAME,
    DELIVERY_ASSET_URI,
    REGISTERS_ASSET_NAME,
    REGISTERS_ASSET_URI,
    steps,
)

DELIVERY = Asset(name=DELIVERY_ASSET_NAME, uri=DELIVERY_ASSET_URI)
REGISTERS = Asset(name=REGISTERS_ASSET_NAME, uri=REGISTERS_ASSET_URI)


def _step_task(step: Callable[..., dict[str, object]]):  # type: ignore[no-untyped-def]
    """A task that runs one library step for one LA; a rejected delivery fails without retries."""

    @task(task_id=step.__name__, doc_md=step.__doc__)
    def run(la_code: str, params: dict[str, object] | None = None, run_id: str | None = None) -> dict[str, object]:
        from airflow.sdk.exceptions import AirflowFailException

        from cme_pipeline.errors import DeliveryRejected

        try:
            return step(la_code, run_id, params)
        except DeliveryRejected as exc:  # the message names check, field and rows, never values
            raise AirflowFailException(str(exc)) from None

    return run


@dag(
    dag_id="cme_matching",
    # Each term (September, January, April), whenever the partner delivers and whenever a
    # register is imported (a delivery may be waiting for it).
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 1 9,1,4 *", timezone="Europe/London"), assets=DELIVERY | REGISTERS
    ),
    start_date=pendulum.datetime(2026, 9, 1, tz="Europe/London"),
    catchup=False,
    max_active_runs=1,  # two runs must never process the same delivery
    default_args={"retries": 1, "retry_delay": task_retry_delay()},
    params={
        "la_codes": Param(list(LA_CODES), type="array", items={"type": "string", "enum": list(LA_CODES)},
                          minItems=1, uniqueItems=True, description="ONS codes of the LAs to run"),
        "academic_year": Param(None, type=["null", "integer"], minimum=2020, maximum=2100,
                               description="Start year of the academic year (default: current)"),
        "match_threshold": Param(0.95, type="number", minimum=MATCH_THRESHOLD_FLOOR, maximum=1,
                                 description="Probability at or above which a child is matched (and "
                                             f"their health data deleted); at least {MATCH_THRESHOLD_FLOOR}"),
        "possible_threshold": Param(0.50, type="number", minimum=0, maximum=1,
                                    description="Probability at or above which a pair goes to review"),
    },
    tags=["cme"],
    doc_md=__doc__,
)
def cme_matching() -> None:
    @task(doc_md="Which of the requested LAs have a delivery waiting in their inbox.")
    def plan(params: dict[str, object] | None = None) -> list[str]:
        return steps.plan(params or {})

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0,
          doc_md="If any step failed: discard everything staged for this run, record why, "
                 "and fail so the run shows as failed. The delivery stays encrypted.")
    def abandon(la_code: str, params: dict[str, object] | None = None, run_id: str | None = None) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(steps.abandon(la_code, run_id, params)["message"])

    @task_group
    def per_la(la_code: str) -> None:
        tasks = [_step_task(step)(la_code) for step in steps.MATCHING_STEPS]
        chain(*tasks)
        tasks >> abandon(la_code)

    per_la.expand(la_code=plan())


cme_matching()
