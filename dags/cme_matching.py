"""cme_matching: match each LA's waiting NHS delivery against its education registers.

Wiring only; every step is a function in ``cme_pipeline.pipeline.steps``. One mapped task group
per LA with a waiting delivery (mapping is over LA codes, never over records). Tasks hand each
other ids and counts only.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, Param, dag, task, task_group
from airflow.timetables.trigger import CronTriggerTimetable

from cme_pipeline.areas import LA_CODES
from cme_pipeline.pipeline import DELIVERY_ASSET_NAME, DELIVERY_ASSET_URI

DELIVERY = Asset(name=DELIVERY_ASSET_NAME, uri=DELIVERY_ASSET_URI)



def _step(name: str, *args: object) -> dict[str, object]:
    """Run one library step; a rejected delivery fails the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from cme_pipeline.errors import DeliveryRejected
    from cme_pipeline.pipeline import steps

    try:
        result: dict[str, object] = getattr(steps, name)(*args)
    except DeliveryRejected as exc:  # the message names check, field and rows, never values
        raise AirflowFailException(str(exc)) from None
    return result


@dag(
    dag_id="cme_matching",
    # Each term (September, January, April) and whenever the partner delivers.
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 1 9,1,4 *", timezone="Europe/London"), assets=DELIVERY
    ),
    start_date=pendulum.datetime(2026, 9, 1, tz="Europe/London"),
    catchup=False,
    max_active_runs=1,  # two runs must never process the same delivery
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=30)},
    params={
        "la_codes": Param(list(LA_CODES), type="array", items={"type": "string", "enum": list(LA_CODES)},
                          minItems=1, uniqueItems=True, description="ONS codes of the LAs to run"),
        "academic_year": Param(None, type=["null", "integer"], minimum=2020, maximum=2100,
                               description="Start year of the academic year (default: current)"),
        "match_threshold": Param(0.95, type="number", minimum=0, maximum=1,
                                 description="Probability at or above which a child is matched"),
        "possible_threshold": Param(0.50, type="number", minimum=0, maximum=1,
                                    description="Probability at or above which a pair goes to review"),
    },
    tags=["cme"],
    doc_md=__doc__,
)
def cme_matching() -> None:
    @task(doc_md="Which of the requested LAs have a delivery waiting in their inbox.")
    def plan(params: dict[str, object] | None = None) -> list[str]:
        from cme_pipeline.pipeline import steps

        assert params is not None
        return steps.plan(params)

    @task_group
    def per_la(la_code: str) -> None:
        @task(doc_md="Verify the signature, decrypt in memory, validate (GX) and stage encrypted.")
        def open_delivery(la_code: str, params: dict[str, object] | None = None, run_id: str | None = None) -> dict[str, object]:
            return _step("open_delivery", la_code, run_id, params)

        @task(doc_md="Load the LA's education registers and validate them (GX).")
        def check_registers(opened: dict[str, object], run_id: str | None = None) -> dict[str, object]:
            return _step("check_registers", opened["la_code"], run_id)

        @task(doc_md="Match every health record against every register (rapidfuzz, Fellegi-Sunter).")
        def match(opened: dict[str, object], registers: dict[str, object], params: dict[str, object] | None = None,
                  run_id: str | None = None) -> dict[str, object]:
            return _step("match", opened["la_code"], run_id, params)

        @task(doc_md="Delete matched children's health data (crypto-shredding); retain only the rest.")
        def minimise(matched: dict[str, object], run_id: str | None = None) -> dict[str, object]:
            return _step("minimise", matched["la_code"], run_id)

        @task(doc_md="Prove the retained set holds only what it may (GX) and counts reconcile.")
        def check_retained(minimised: dict[str, object], run_id: str | None = None) -> dict[str, object]:
            return _step("check_retained", minimised["la_code"], run_id)

        @task(doc_md="Signed deletion certificate, DPO report, ledger checkpoint; shred the delivery.")
        def evidence(checked: dict[str, object], run_id: str | None = None) -> dict[str, object]:
            return _step("evidence", checked["la_code"], run_id)

        @task(trigger_rule="one_failed", retries=0,
              doc_md="If any step failed: discard everything staged for this run, record why, "
                     "and fail so the run shows as failed. The delivery stays encrypted.")
        def abandon(la_code: str, run_id: str | None = None) -> None:
            from airflow.sdk.exceptions import AirflowFailException

            outcome = _step("abandon", la_code, run_id)
            raise AirflowFailException(str(outcome["message"]))

        opened = open_delivery(la_code)
        registers = check_registers(opened)
        matched = match(opened, registers)
        minimised = minimise(matched)
        checked = check_retained(minimised)
        done = evidence(checked)
        [opened, registers, matched, minimised, checked, done] >> abandon(la_code)

    per_la.expand(la_code=plan())


cme_matching()
