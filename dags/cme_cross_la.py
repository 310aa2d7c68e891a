"""cme_cross_la: once every LA of a round has run, look for each chosen LA's `unmatched` children
on the other Welsh LAs' registers by privacy-preserving record linkage (docs/cross-la.md); a child
found elsewhere leaves the retained list. Wiring only; see ``cme_pipeline.la.cross_la``."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from cme_pipeline.areas import LA_CODES


@dag(
    dag_id="cme_cross_la",
    schedule=None,
    start_date=pendulum.datetime(2026, 9, 1, tz="Europe/London"),
    catchup=False,
    max_active_runs=1,  # one check at a time: each has its own shared secret, made and destroyed
    params={
        "la_codes": Param(list(LA_CODES), type="array", items={"type": "string", "enum": list(LA_CODES)},
                          minItems=1, uniqueItems=True),
    },
    tags=["cme"],
    doc_md=__doc__,
)
def cme_cross_la() -> None:
    @task(doc_md="Encode, link at the linkage unit, remove children found elsewhere; returns counts and LA codes.")
    def check(params: dict[str, object] | None = None) -> dict[str, dict[str, object]]:
        from cme_pipeline.pipeline.cross_la import cross_la_check

        assert params is not None
        return cross_la_check(params)

    check()


cme_cross_la()
