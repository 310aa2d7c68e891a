"""The matching pipeline's steps (called by the thin DAG files) and per-run state.

Kept import-light: DAG files import this package at parse time for the constants below.
"""

from __future__ import annotations

# The Airflow Asset a partner delivery updates; cme_matching is scheduled on it.
DELIVERY_ASSET_NAME = "nhs_delivery"
DELIVERY_ASSET_URI = "cme://deliveries"

# The Airflow Asset an imported register export updates (cme_registers); cme_matching is
# scheduled on it too, so a delivery held back by stale registers runs once fresh ones land.
REGISTERS_ASSET_NAME = "la_registers"
REGISTERS_ASSET_URI = "cme://registers"
