"""Simulate one LA in memory: its health extract, its registers and the ground truth."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cme_pipeline.areas import LA_CODES, LA_NAMES
from cme_pipeline.nhs_number import generate_test_numbers
from cme_pipeline.schemas import (
    HEALTH_EXTRACT,
    HEALTH_LOCATION,
    PREVIOUS_POSTCODE,
    RESTRICTED,
    TRUTH,
)
from cme_pipeline.school_age import academic_year_start, compulsory_dob_window
from cme_pipeline.simulate.cross_la import pair_children
from cme_pipeline.simulate.geography import AREAS, Area
from cme_pipeline.simulate.noise import CoverageConfig, NoiseConfig
from cme_pipeline.simulate.population import FamilyConfig, simulate_population
from cme_pipeline.simulate.registers import assign_status, build_registers

DEFAULT_SEED = 20260901
RESTRICTED_RATE = 0.002  # share of households whose records the NHS marks sensitive (the S flag)
_RESTRICTED_STREAM = 15  # its own generator: the rate changes nothing else in the simulation


@dataclass
class SimulatedLA:
    """One LA's simulated data, in memory."""

    la_code: str
    extract_date: dt.date
    year_start: int
    extract: pd.DataFrame  # HEALTH_EXTRACT columns, str values, "" for missing
    registers: dict[str, pd.DataFrame]  # register_columns(source), ISO date strings
    truth: pd.DataFrame  # TRUTH columns, one row per child on the extract
    register_truth: pd.DataFrame  # REGISTER_TRUTH columns, one row per register record
    # Partner-side only: what the partner withheld from restricted rows (``nhs_number`` and the
    # HEALTH_LOCATION columns as the NHS holds them), so tests can look for it on the LA side.
    withheld: pd.DataFrame = field(default_factory=pd.DataFrame)


def la_rng(seed: int, la_code: str) -> np.random.Generator:
    """The LA's own generator, so each LA's data depends only on the seed and its code."""
    return np.random.default_rng([seed, LA_CODES.index(la_code)])


def default_extract_date(year_start: int) -> dt.date:
    """Extracts are taken in the autumn term, after the September census of new pupils."""
    return dt.date(year_start, 10, 1)


def simulate_la(
    la_code: str,
    children: int | None = None,
    seed: int = DEFAULT_SEED,
    noise: NoiseConfig | None = None,
    year_start: int | None = None,
    coverage: CoverageConfig | None = None,
    nhs_numbers: list[str] | None = None,
    restricted_rate: float = RESTRICTED_RATE,
    cross_pairs: Sequence[tuple[str, str, list[str]]] = (),
) -> SimulatedLA:
    """Simulate one LA's health extract, registers and ground truth, in memory.

    Args:
        la_code: the LA's ONS code.
        children: GP-registered children of compulsory school age (default: realistic size).
        seed: the simulation seed; the same seed gives the same data.
        noise: register-side noise rates (default ``NoiseConfig()``).
        year_start: the academic year (default: the one containing today).
        coverage: register coverage rates (default ``CoverageConfig()``).
        nhs_numbers: the NHS numbers to use (the all-Wales simulation hands each LA a disjoint
            slice so numbers are unique across Wales); default: drawn from the LA's generator.
        restricted_rate: share of households marked restricted: their children's rows arrive
            with ``restricted=Y`` and no address, postcode or GP practice (the registers still
            hold them: schools know where they live).
        cross_pairs: ``(home LA, register LA, NHS numbers)`` of children on a neighbouring LA's
            register (``simulate.cross_la``): those whose home LA is this one are part of the
            ``children`` on its extract and on none of its registers; those whose register LA is
            this one are on its census. ``nhs_numbers`` then numbers only the LA's other children.
    """
    if not 0.0 <= restricted_rate <= 1.0:
        raise ValueError("restricted_rate must be between 0 and 1")
    area = AREAS[la_code]
    n = area.children if children is None else children
    year = academic_year_start(dt.date.today()) if year_start is None else year_start
    extract_date = default_extract_date(year)
    noise = noise or NoiseConfig()
    coverage = coverage or CoverageConfig()
    rng = la_rng(seed, la_code)
    window = compulsory_dob_window(year)
    names = noise.families.names  # both LAs of a pair must draw the pair's children alike
    outgoing = [pair_children(seed, a, b, nums, window, extract_date, names) for a, b, nums in cross_pairs if a == la_code]
    incoming = [pair_children(seed, a, b, nums, window, extract_date, names) for a, b, nums in cross_pairs if b == la_code]
    own = n - sum(len(p.population) for p in outgoing)
    if own < 1:
        raise ValueError("cross-LA children outnumber the LA's children")
    numbers = nhs_numbers if nhs_numbers is not None else generate_test_numbers(own, rng)
    if len(numbers) != own:
        raise ValueError("need exactly one NHS number per child")
    pop = simulate_population(rng, area, own, window, extract_date, numbers, noise.families)
    pop["household_id"] = la_code + "-H" + pop["household_id"]
    pop["twin"] = np.where(pop["twin"] != "", la_code + "-" + pop["twin"], "")

    status = assign_status(rng, own, coverage)
    register_only = _register_only(rng, area, int(round(n * coverage.register_only)), year, extract_date, pop, names)
    # The partner's address history: a household that moved since the registers were taken
    # (``FamilyConfig.stale_move``, or between LAs below) has its old postcode sent. A register
    # record's own wrong address (``NoiseConfig.moved_house``) is the register's error, not a move.
    if "register_postcode" in pop:
        moved = pop["register_postcode"] != pop["postcode"]
        pop["previous_postcode"] = np.where(moved, pop["register_postcode"], "")
    else:
        pop["previous_postcode"] = ""
    if outgoing:  # on the extract, on none of this LA's registers
        pop = pd.concat([pop, *(p.population.assign(previous_postcode=p.previous_postcodes()) for p in outgoing)],
                        ignore_index=True)
        status = np.concatenate([status, *(np.where(p.moved, "other_la:moved", "other_la:schooled") for p in outgoing)])
    if incoming:  # on this LA's census, on another LA's extract
        register_only = pd.concat([register_only, *(p.census_rows() for p in incoming)], ignore_index=True)
    other_la = pd.Series("", index=pop.index, dtype=object)
    start = own
    for p in outgoing:
        other_la.iloc[start : start + len(p.population)] = p.register_la
        start += len(p.population)
    registers, register_truth = build_registers(
        rng, la_code, area, pop, status, register_only, coverage, noise, extract_date
    )

    extract = pd.DataFrame(
        {
            **{c: pop[c] for c in ("nhs_number", "forename", "middle_names", "surname", "former_surname", "dob", "sex", "address_line1")},
            "address_line2": pop["town"],
            "address_line3": LA_NAMES[la_code],
            "address_line4": "",
            **{c: pop[c] for c in ("postcode", "gp_practice_code", "registration_date")},
            RESTRICTED: _restricted(seed, la_code, pop["household_id"], restricted_rate),
            PREVIOUS_POSTCODE: pop["previous_postcode"],
        }
    )[list(HEALTH_EXTRACT)]
    flagged = extract[RESTRICTED] == "Y"
    withheld = extract.loc[flagged, ["nhs_number", *HEALTH_LOCATION]].reset_index(drop=True)
    extract.loc[flagged, list(HEALTH_LOCATION)] = ""

    on_registers = register_truth[register_truth["nhs_number"] != ""]
    items = (on_registers["register"] + ":" + on_registers["record_id"]).groupby(on_registers["nhs_number"]).agg(";".join)
    truth = pd.DataFrame(
        {
            "nhs_number": pop["nhs_number"],
            "la_code": la_code,
            "registers": pop["nhs_number"].map(items).astype(object).fillna(""),  # object: items may be empty
            "household_id": pop["household_id"],
            "twin": pop["twin"],
            RESTRICTED: extract[RESTRICTED],
            "other_la": other_la,
        }
    )
    truth["reason"] = np.where(truth["registers"] == "", status, "")
    return SimulatedLA(la_code, extract_date, year, extract, registers, truth[list(TRUTH)], register_truth, withheld)


def _restricted(seed: int, la_code: str, households: pd.Series, rate: float) -> np.ndarray:
    """``Y`` or ``N`` per child; a whole household is restricted or not, since a sibling's
    address would place the others."""
    rng = np.random.default_rng([seed, LA_CODES.index(la_code), _RESTRICTED_STREAM])
    codes, unique = pd.factorize(households)
    chosen = rng.random(len(unique)) < rate
    return np.where(chosen[codes], "Y", "N")


def _register_only(
    rng: np.random.Generator, area: Area, m: int, year: int, extract_date: dt.date, like: pd.DataFrame,
    names: str,
) -> pd.DataFrame:
    """Children on the census but not on this extract: nursery and sixth-form pupils (outside the
    age window) and pupils registered with a GP in another area (named as ``names`` says)."""
    nursery = (dt.date(year - 4, 9, 1), dt.date(year - 3, 8, 31))
    sixth = (dt.date(year - 18, 9, 1), dt.date(year - 16, 8, 31))
    window = compulsory_dob_window(year)
    parts = []
    for share, span in ((0.35, nursery), (0.50, sixth), (0.15, window)):
        k = int(round(m * share))
        if k:
            parts.append(simulate_population(rng, area, k, span, extract_date, [""] * k, FamilyConfig(names=names)))
    return pd.concat(parts, ignore_index=True) if parts else like.iloc[0:0]
