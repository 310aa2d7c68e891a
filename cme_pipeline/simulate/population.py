"""The true population of one LA: households, siblings and twins, names, dates and addresses.

This is the partner-side ground truth from which the health extract and the registers are
derived. Everything is vectorised with numpy so that all of Wales takes seconds.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from cme_pipeline.simulate.geography import Area
from cme_pipeline.simulate.names import (
    GIVEN_NAMES,
    OTHER_SURNAMES,
    POSTCODE_LETTERS,
    STREETS,
    TAIL_PREFIXES,
    TAIL_SUFFIXES,
    WELSH_SURNAMES,
)

HOUSEHOLD_SIZES = np.array([1, 2, 3, 4])
HOUSEHOLD_WEIGHTS = np.array([0.45, 0.38, 0.13, 0.04])
# Chosen so that about 3% of children are twins, as in UK births (about 1.5% of maternities).
TWIN_HOUSEHOLD_RATE = 0.05
WELSH_SHARE = 0.725  # the Welsh table's weights are per cent of the population (Jones 14%)
HYPHENATED_RATE = 0.03
HALF_SIBLING_RATE = 0.10
MIDDLE_NAME_RATE = 0.60
FORMER_SURNAME_RATE = 0.02


def surname_pool() -> tuple[np.ndarray, np.ndarray]:
    """All surnames and their probabilities: Welsh frequencies, common others and a rare tail."""
    welsh = [s for s, _ in WELSH_SURNAMES]
    welsh_w = np.array([w for _, w in WELSH_SURNAMES])
    welsh_w = welsh_w / welsh_w.sum() * WELSH_SHARE
    tail = [p + s.lower() for p in TAIL_PREFIXES for s in TAIL_SUFFIXES]
    others = list(OTHER_SURNAMES) + tail
    # Zipf-like weights for the rest so some are common, most are rare.
    ranks = np.arange(1, len(others) + 1)
    other_w = 1.0 / ranks**0.9
    other_w = other_w / other_w.sum() * (1 - WELSH_SHARE)
    return np.array(welsh + others, dtype=object), np.concatenate([welsh_w, other_w])


def given_name_pool(sex: str) -> tuple[np.ndarray, np.ndarray]:
    """Given names of one sex and their probabilities (earlier entries a little more common)."""
    pool = [g for g, s, _ in GIVEN_NAMES if s == sex]
    w = 1.0 / np.arange(1, len(pool) + 1) ** 0.3
    return np.array(pool, dtype=object), w / w.sum()


def random_postcodes(rng: np.random.Generator, districts: tuple[str, ...], n: int) -> np.ndarray:
    """``n`` well-formed postcodes in the given districts, e.g. ``CF10 3AT``."""
    d = rng.choice(np.array(districts, dtype=object), n)
    sector = rng.integers(0, 10, n).astype(str)
    letters = np.array(list(POSTCODE_LETTERS), dtype=object)
    unit = rng.choice(letters, n) + rng.choice(letters, n)
    return (d + " " + sector + unit).astype(object)


def random_addresses(
    rng: np.random.Generator, area: Area, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` addresses in the LA: (first line, town, postcode)."""
    number = rng.integers(1, 240, n).astype(str)
    street = rng.choice(np.array(STREETS, dtype=object), n)
    town = rng.choice(np.array(area.towns, dtype=object), n)
    return (number + " " + street).astype(object), town, random_postcodes(rng, area.districts, n)


def simulate_population(
    rng: np.random.Generator,
    area: Area,
    n: int,
    dob_window: tuple[dt.date, dt.date],
    extract_date: dt.date,
    nhs_numbers: list[str],
) -> pd.DataFrame:
    """The true identities of ``n`` GP-registered children of one LA.

    Args:
        rng: the LA's random generator.
        area: the LA's geography.
        n: number of children.
        dob_window: earliest and latest date of birth (compulsory school age).
        extract_date: the extract's date (registration dates fall before it).
        nhs_numbers: ``n`` distinct NHS numbers for them.
    """
    sizes = rng.choice(HOUSEHOLD_SIZES, size=n, p=HOUSEHOLD_WEIGHTS)  # more than enough
    cut = int(np.searchsorted(np.cumsum(sizes), n)) + 1
    sizes = sizes[:cut]
    sizes[-1] -= int(sizes.sum() - n)
    n_households = sizes.size
    household = np.repeat(np.arange(n_households), sizes)
    position = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)

    names, probs = surname_pool()
    hh_surname = rng.choice(names, n_households, p=probs)
    hyphen = rng.random(n_households) < HYPHENATED_RATE
    hh_surname[hyphen] = hh_surname[hyphen] + "-" + rng.choice(names, int(hyphen.sum()), p=probs)
    line1, town, postcode = random_addresses(rng, area, n_households)

    surname = hh_surname[household]
    half = (rng.random(n) < HALF_SIBLING_RATE) & (position > 0)
    surname[half] = rng.choice(names, int(half.sum()), p=probs)

    start = np.datetime64(dob_window[0])
    span = int((np.datetime64(dob_window[1]) - start).astype(int)) + 1
    dob = start + rng.integers(0, span, n).astype("timedelta64[D]")
    twin = np.full(n, "", dtype=object)
    twin_hh = (rng.random(n_households) < TWIN_HOUSEHOLD_RATE) & (sizes >= 2)
    first = np.cumsum(sizes) - sizes  # index of each household's first child
    a, b = first[twin_hh], first[twin_hh] + 1
    dob[b] = dob[a]
    surname[b] = surname[a]
    labels = np.array([f"T{h}" for h in np.flatnonzero(twin_hh)], dtype=object)
    twin[a] = labels
    twin[b] = labels

    sex = np.where(rng.random(n) < 0.5, "F", "M").astype(object)
    sex[rng.random(n) < 0.001] = "U"
    forename = np.empty(n, dtype=object)
    middle = np.full(n, "", dtype=object)
    for s in ("F", "M", "U"):
        idx = np.flatnonzero(sex == s)
        pool, p = given_name_pool("F" if s == "U" else s)
        forename[idx] = rng.choice(pool, idx.size, p=p)
        has_middle = idx[rng.random(idx.size) < MIDDLE_NAME_RATE]
        middle[has_middle] = rng.choice(pool, has_middle.size, p=p)
    # Twins never share a forename (and siblings' middle names never equal their forename).
    same = (forename[b] == forename[a]) & (sex[b] == sex[a])
    for i in np.flatnonzero(same):
        pool, p = given_name_pool("F" if sex[b[i]] == "F" else "M")
        while forename[b[i]] == forename[a[i]]:
            forename[b[i]] = rng.choice(pool, p=p)
    clash = middle == forename
    middle[clash] = ""

    former = np.full(n, "", dtype=object)
    has_former = rng.random(n) < FORMER_SURNAME_RATE
    former[has_former] = rng.choice(names, int(has_former.sum()), p=probs)

    days_registered = (np.datetime64(extract_date) - dob).astype(int)
    registration = dob + (rng.random(n) * days_registered).astype("timedelta64[D]")
    practices = np.array([f"{area.gp_prefix}{i:03d}" for i in range(max(3, n // 1500))], dtype=object)

    return pd.DataFrame(
        {
            "nhs_number": np.array(nhs_numbers, dtype=object),
            "forename": forename,
            "middle_names": middle,
            "surname": surname,
            "former_surname": former,
            "dob": pd.to_datetime(dob).strftime("%Y-%m-%d"),
            "sex": sex,
            "address_line1": line1[household],
            "town": town[household],
            "postcode": postcode[household],
            "gp_practice_code": rng.choice(practices, n),
            "registration_date": pd.to_datetime(registration).strftime("%Y-%m-%d"),
            "household_id": household.astype(str),
            "twin": twin,
        }
    )
