"""nhs_partner_simulator: the simulated NHS partnership delivers an encrypted, signed extract to
each chosen LA's inbox (for the demo and tests), which triggers cme_matching; first its witness
answers the LAs' receipt requests (cosigning the checkpoints of earlier runs)."""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task

from cme_pipeline.areas import LA_CODES
from cme_pipeline.pipeline import DELIVERY_ASSET_NAME, DELIVERY_ASSET_URI

DELIVERY = Asset(name=DELIVERY_ASSET_NAME, uri=DELIVERY_ASSET_URI)


@dag(
    dag_id="nhs_partner_simulator",
    schedule=None,
    start_date=pendulum.datetime(2026, 9, 1, tz="Europe/London"),
    catchup=False,
    params={
        "la_codes": Param(["W06000015"], type="array", items={"type": "string", "enum": list(LA_CODES)},
                          minItems=1, uniqueItems=True),
        "children": Param(None, type=["null", "integer"], minimum=1,
                          description="Children across the LAs (default: realistic sizes)"),
        "seed": Param(20260901, type="integer"),
    },
    tags=["cme", "simulation"],
    doc_md=__doc__,
)
def nhs_partner_simulator() -> None:
    @task(outlets=[DELIVERY], doc_md="Simulate and deliver; returns counts per LA only.")
    def deliver(params: dict[str, object] | None = None) -> dict[str, int]:
        from cme_pipeline.pipeline.simulation import simulate_deliveries

        assert params is not None
        return simulate_deliveries(params)

    @task(doc_md="The partner's witness answers the LAs' receipt requests (cosigns checkpoints that extend "
                 "what it saw, refuses any other); returns cosignatures per LA.")
    def witness(params: dict[str, object] | None = None) -> dict[str, int]:
        from cme_pipeline.pipeline.simulation import witness_requests

        assert params is not None
        return witness_requests(params)

    witness() >> deliver()


nhs_partner_simulator()
