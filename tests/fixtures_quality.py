"""Fixtures for the quality gates and intake: a small, synthetic, valid health extract."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import pytest

from cme_pipeline.schemas import HEALTH_EXTRACT

YEAR = 2026
EXTRACT_DATE = dt.date(2026, 10, 1)
LA = "W06000015"  # Cardiff
OTHER_LA = "W06000002"  # Gwynedd


@dataclass(frozen=True)
class GoodExtract:
    """A valid extract and the personal values a leak scan looks for."""

    frame: pd.DataFrame

    def csv(self, frame: pd.DataFrame | None = None) -> bytes:
        """The extract as the partner's CSV bytes."""
        return (self.frame if frame is None else frame).to_csv(index=False, lineterminator="\n").encode()

    def needles(self) -> list[str]:
        """Values that must never leave the encrypted stores: NHS numbers, names, dobs, addresses.

        Only values of six characters or more, so a scan over ciphertext cannot match by chance.
        """
        values: set[str] = set()
        for column in ("nhs_number", "forename", "surname", "dob", "address_line1", "postcode"):
            values.update(v for v in self.frame[column] if len(v) >= 6)
        full_names = self.frame["forename"] + " " + self.frame["surname"]
        values.update(full_names)
        assert len(values) > 100  # a scan over an empty sample proves nothing
        return sorted(values)


@pytest.fixture(scope="session")
def good_extract() -> GoodExtract:
    """Forty simulated Cardiff children of compulsory school age in 2026/27 (all valid)."""
    from cme_pipeline.simulate import simulate_la

    sim = simulate_la(LA, children=40, seed=11, year_start=YEAR)
    frame = sim.extract[list(HEALTH_EXTRACT)].reset_index(drop=True)
    return GoodExtract(frame)
