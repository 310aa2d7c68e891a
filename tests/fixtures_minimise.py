"""Fixtures for minimisation: a simulated LA, its real match outcomes, and a staged home."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.home import open_home
from cme_pipeline.schemas import HEALTH_EXTRACT

MIN_LA = "W06000015"  # Cardiff
MIN_DELIVERY = "D20261001-W06000015-0000beef"
MIN_RUN = "manual__2026-10-02T09:00:00+00:00"
MIN_TODAY = dt.date.today()  # retention is judged against the real date when rows are read


@dataclass(frozen=True)
class MatchedDelivery:
    """A simulated delivery, the LA's registers and the outcomes the real matcher gives."""

    extract: pd.DataFrame  # HEALTH_EXTRACT columns
    registers: dict[str, pd.DataFrame]
    outcomes: pd.DataFrame  # MATCH_OUTCOME columns

    def ids(self, outcome: str) -> list[str]:
        """health_record_ids with the given outcome."""
        return list(self.outcomes.loc[self.outcomes["outcome"] == outcome, "health_record_id"])

    def nhs_numbers(self, outcome: str | None = None) -> list[str]:
        """NHS numbers of children with the given outcome (all if None)."""
        if outcome is None:
            return list(self.extract["nhs_number"])
        mask = (self.outcomes["outcome"] == outcome).to_numpy()
        return list(self.extract.loc[mask, "nhs_number"])


def _match(children: int, seed: int) -> MatchedDelivery:
    from cme_pipeline import matching
    from cme_pipeline.simulate import simulate_la

    sim = simulate_la(MIN_LA, children=children, seed=seed, year_start=2026)
    extract = sim.extract[list(HEALTH_EXTRACT)].reset_index(drop=True)
    outcomes = matching.match_registers(
        matching.health_to_canonical(extract),
        {s: matching.register_to_canonical(f) for s, f in sim.registers.items()},
    )
    return MatchedDelivery(extract, sim.registers, outcomes)


@pytest.fixture(scope="session")
def matched_delivery() -> MatchedDelivery:
    """About 300 simulated Cardiff children with real outcomes in all three bands."""
    delivery = _match(300, 3)
    counts = delivery.outcomes["outcome"].value_counts()
    if counts.get("possible", 0) == 0:  # the tests need every band; send one match to review
        last_matched = delivery.outcomes.index[delivery.outcomes["outcome"] == "matched"][-1]
        delivery.outcomes.loc[last_matched, "outcome"] = "possible"  # with its candidate, as a real one has
    assert {"matched", "possible", "unmatched"} <= set(delivery.outcomes["outcome"])
    return delivery


def home_settings(root: Path, database_url: str | None = None, keystore: Mapping[str, str] | None = None) -> Settings:
    """Settings on a fresh home, optionally pointing the store at a PostgreSQL URL and the keys at
    a key store (``keystore``: what ``softhsm.use_keystore`` returned)."""
    env = dict(keystore or {}) | ({"CME_DATABASE_URL": database_url} if database_url else {})
    return load_settings(root, environ=env)


@pytest.fixture
def staged_home(settings: Settings, matched_delivery: MatchedDelivery) -> Settings:
    """A home with the registers loaded and the delivery staged (not yet minimised)."""
    from cme_pipeline.la.minimise import stage_delivery
    from cme_pipeline.store import replace_register

    engine = open_home(settings).store(MIN_LA)
    try:
        for source, frame in matched_delivery.registers.items():
            replace_register(engine, MIN_LA, source, frame, as_of=dt.date.today())
    finally:
        engine.dispose()
    stage_delivery(open_home(settings), MIN_LA, MIN_DELIVERY, matched_delivery.extract)
    return settings
