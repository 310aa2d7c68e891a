"""Fixtures for the matching engine: a synthetic background population to link against.

A linkage model learns from its data, so behaviour tests put their few hand-written records in a
crowd of a few hundred ordinary children (the same on both sides), as a real LA would have.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cme_pipeline.schemas import CANONICAL_PERSON

FORENAMES = ("Oliver", "Amelia", "Noah", "Isla", "Osian", "Ffion", "Harry", "Megan", "Cai", "Seren",
             "Jacob", "Erin", "Tomos", "Lily", "Rhys", "Evie", "Leo", "Mia", "Finley", "Nia")
SURNAMES = ("Jones", "Jones", "Jones", "Davies", "Williams", "Evans", "Thomas", "Roberts", "Hughes",
            "Smith", "Khan", "Taylor", "Morgan", "Ashford", "Penwyn", "Caerley", "Tremore", "Glynton")
STREETS = ("High Street", "Heol y Parc", "Station Road", "Maes y Coed", "Church Lane")


def background_people(n: int, seed: int = 7, prefix: str = "bg") -> pd.DataFrame:
    """``n`` distinct synthetic children in canonical person columns."""
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 11 * 365, n)
    dob = (pd.Timestamp("2010-09-01") + pd.to_timedelta(days, unit="D")).strftime("%Y-%m-%d")
    districts = rng.integers(1, 25, n)
    units = ["".join(rng.choice(list("ABDEFGHJLNPQRSTUWXYZ"), 2)) for _ in range(n)]
    frame = pd.DataFrame(
        {
            "record_id": [f"{prefix}{i:04d}" for i in range(n)],
            "forename": rng.choice(FORENAMES, n),
            "middle_names": "",
            "surname": rng.choice(SURNAMES, n),
            "dob": dob,
            "sex": rng.choice(["M", "F"], n),
            "address": [f"{a} {s}, Cardiff" for a, s in zip(rng.integers(1, 300, n), rng.choice(STREETS, n), strict=True)],
            "postcode": [f"CF{d} {rng.integers(1, 9)}{u}" for d, u in zip(districts, units, strict=True)],
        }
    )
    return frame[list(CANONICAL_PERSON)]


def with_background(left: pd.DataFrame, right: pd.DataFrame, n: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``left`` and ``right`` each appended to the same background population."""
    crowd = background_people(n)
    right_crowd = crowd.assign(record_id="R" + crowd["record_id"])
    fill = {c: "" for c in CANONICAL_PERSON}
    return (
        pd.concat([left, crowd], ignore_index=True).fillna(fill),
        pd.concat([right, right_crowd], ignore_index=True).fillna(fill),
    )


@pytest.fixture
def crowd() -> pd.DataFrame:
    """Four hundred ordinary children."""
    return background_people(400)
