"""Place each child on the LA's registers (or on none, for a modelled reason) and build the
registers as the LA holds them: school census, EOTAS, EHE and CME, with register-side noise."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from cme_pipeline.schemas import REGISTER_SOURCES, register_columns
from cme_pipeline.simulate.distort import distort
from cme_pipeline.simulate.geography import Area
from cme_pipeline.simulate.noise import CoverageConfig, NoiseConfig


def assign_status(rng: np.random.Generator, n: int, coverage: CoverageConfig) -> np.ndarray:
    """Each child's primary status: a register placement or a reason for being on none."""
    rates = coverage.on_register_rates() | coverage.off_register_rates()
    labels = np.array(list(rates), dtype=object)
    p = np.array(list(rates.values()))
    return rng.choice(labels, n, p=p / p.sum())


def _person_rows(pop: pd.DataFrame) -> pd.DataFrame:
    def held(column: str) -> pd.Series:
        # A register taken a term before the extract holds the old surname and address.
        stale = f"register_{column}"
        return pop[stale] if stale in pop.columns else pop[column]

    return pd.DataFrame(
        {
            "forename": pop["forename"].to_numpy(),
            "middle_names": pop["middle_names"].to_numpy(),
            "surname": held("surname").to_numpy(),
            "dob": pop["dob"].to_numpy(),
            "sex": pop["sex"].to_numpy(),
            "address": (held("address_line1") + ", " + held("town")).to_numpy(),
            "postcode": held("postcode").to_numpy(),
            "nhs_number": pop["nhs_number"].to_numpy(),
        }
    )


def _ids(rng: np.random.Generator, prefix: str, n: int, la_code: str) -> np.ndarray:
    # Unique, non-sequential references (like a UPN), so ids reveal nothing about order.
    body = rng.choice(10**9, size=n, replace=False)
    return np.array([f"{prefix}{la_code[-3:]}{b:09d}" for b in body], dtype=object)


def build_registers(
    rng: np.random.Generator,
    la_code: str,
    area: Area,
    pop: pd.DataFrame,
    status: np.ndarray,
    register_only: pd.DataFrame,
    coverage: CoverageConfig,
    noise: NoiseConfig,
    extract_date: dt.date,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Build the four registers and the register-side ground truth.

    Args:
        rng: the LA's random generator.
        la_code: the LA's ONS code.
        area: the LA's geography.
        pop: the GP-registered children (true identities).
        status: each child's primary status from ``assign_status``.
        register_only: children on registers but not on this LA's extract.
        coverage: register coverage rates.
        noise: register-side noise rates.
        extract_date: the extract date (register dates fall before it).
    """
    people = _person_rows(pop)
    extra = _person_rows(register_only)
    n = len(pop)
    members: dict[str, np.ndarray] = {
        "school_census": np.flatnonzero(np.char.startswith(status.astype(str), "school_census")),
        "eotas": np.flatnonzero(status == "eotas"),
        "ehe": np.flatnonzero(status == "ehe"),
        "cme": np.flatnonzero(status == "cme"),
    }
    census = members["school_census"]
    members["eotas"] = np.union1d(members["eotas"], census[rng.random(census.size) < coverage.dual_eotas])
    ehe = members["ehe"]
    members["cme"] = np.union1d(members["cme"], ehe[rng.random(ehe.size) < coverage.dual_cme])

    n_schools = max(4, n // 400)
    schools = np.array([f"{6600000 + int(la_code[-2:]) * 1000 + i:07d}" for i in range(n_schools)], dtype=object)
    registers: dict[str, pd.DataFrame] = {}
    truth: list[pd.DataFrame] = []
    prefixes = {"school_census": "A", "eotas": "EOT", "ehe": "EHE", "cme": "CME"}
    for source in REGISTER_SOURCES:
        rows = people.iloc[members[source]]
        if source == "school_census":
            rows = pd.concat([rows, extra], ignore_index=True)  # nursery, sixth form, GP elsewhere
        rows = rows.reset_index(drop=True)
        noisy, labels = distort(rows, rng, noise, area)
        m = len(noisy)
        noisy["record_id"] = _ids(rng, prefixes[source], m, la_code)
        if source == "school_census":
            independent = np.zeros(m, dtype=bool)
            independent[: members[source].size] = status[members[source]] == "school_census:independent"
            noisy["school_code"] = rng.choice(schools, m)
            noisy["school_type"] = np.where(independent, "independent", "maintained")
            noisy["enrolment_status"] = rng.choice(np.array(["C", "M", "S"]), m, p=[0.985, 0.01, 0.005])
        elif source == "eotas":
            noisy["provision"] = rng.choice(np.array(["PRU", "tuition", "other"]), m, p=[0.6, 0.3, 0.1])
        else:
            days = rng.integers(1, 700, m).astype("timedelta64[D]")
            column = "notified_date" if source == "ehe" else "referral_date"
            noisy[column] = pd.to_datetime(np.datetime64(extract_date) - days).strftime("%Y-%m-%d")
        registers[source] = noisy[list(register_columns(source))].reset_index(drop=True)
        truth.append(
            pd.DataFrame(
                {
                    "register": source,
                    "record_id": noisy["record_id"].to_numpy(),
                    "la_code": la_code,
                    "nhs_number": noisy["nhs_number"].to_numpy(),
                    "noise": labels,
                }
            )
        )
    return registers, pd.concat(truth, ignore_index=True)
