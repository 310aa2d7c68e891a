"""Field comparisons of candidate pairs, as integer agreement levels (vectorised).

Each comparison maps a pair to a level: higher means stronger agreement, ``-1`` means a value is
missing on either side (a null level carries no weight, as in Fellegi-Sunter). String similarity
runs through ``rapidfuzz.process.cpdist`` on the *distinct* value pairs only: names repeat so
much that 6 million candidate pairs hold a few hundred thousand distinct name pairs.

Levels (top first):

- forename: exact, known variant (nickname or Welsh/English), forename and middle swapped,
  Jaro-Winkler >= 0.92, one side's middle name used as the other's forename, JW >= 0.80,
  other. A full swap is strong evidence; a one-way use of the middle name is weak, because
  middle names are drawn from the same pool as forenames and agree by chance often.
- surname: exact, shares a family-name part or the former surname, JW >= 0.92, >= 0.80, other.
- dob: exact, day and month transposed, one digit slipped or a day apart, within a year, other.
- sex: same, different.
- middle: exact, variant or JW >= 0.88, other; null when the forename level already used the
  middle name (a swap), so one fact is not counted twice.
- location: postcode and address agree, postcode agrees, address agrees (house number and
  street), postcode sector, postcode district, other. Postcode and address are one comparison
  because a house move changes both: as two they would double-count one fact. A side with
  neither (a restricted health record, which arrives without location) makes it null: such a
  child is matched on names, date of birth and sex, neither helped nor penalised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process
from rapidfuzz.distance import JaroWinkler

from cme_pipeline.matching import names
from cme_pipeline.matching.prepare import MISSING_DAYS, Prepared

LEVELS: Final[dict[str, tuple[str, ...]]] = {
    "forename": ("other", "jw>=0.80", "middle as forename", "jw>=0.92", "swapped with middle",
                 "variant", "exact"),
    "surname": ("other", "jw>=0.80", "jw>=0.92", "shares a part or former", "exact"),
    "dob": ("other", "within a year", "one digit or day", "day/month transposed", "exact"),
    "sex": ("different", "same"),
    "middle": ("other", "variant or jw>=0.88", "exact"),
    "location": ("other", "district", "sector", "address", "postcode", "postcode and address"),
}
COMPARISONS: Final = tuple(LEVELS)
# Levels whose agreement is on a specific value, weighted by how rare the value is.
TF_LEVELS: Final = {"forename": 6, "surname": 4}
FORENAME_SWAPS: Final = (2, 4)  # forename levels that used the middle name


def _distinct_pairs(
    a: np.ndarray, b: np.ndarray, left: np.ndarray, right: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (a[left], b[right]) value pairs and the inverse that maps them back."""
    a_code, a_values = pd.factorize(a)
    b_code, b_values = pd.factorize(b)
    width = max(len(b_values), 1)
    joint = a_code[left].astype(np.int64) * width + b_code[right]
    inverse, distinct = pd.factorize(joint)
    return (
        np.asarray(a_values, dtype=object)[distinct // width],
        np.asarray(b_values, dtype=object)[distinct % width],
        inverse,
    )


def _on_distinct(
    a: np.ndarray,
    b: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    if len(left) == 0:
        return np.empty(0)
    ua, ub, inverse = _distinct_pairs(a, b, left, right)
    return np.asarray(fn(ua, ub))[inverse]


def _jaro_winkler(workers: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def run(ua: np.ndarray, ub: np.ndarray) -> np.ndarray:
        return process.cpdist(
            list(ua), list(ub), scorer=JaroWinkler.normalized_similarity, workers=workers
        )

    return run


def _variants(ua: np.ndarray, ub: np.ndarray) -> np.ndarray:
    return np.fromiter((names.are_variants(x, y) for x, y in zip(ua, ub, strict=True)), bool, len(ua))


def _string_levels(sim: np.ndarray, out: np.ndarray, high: float, low: float) -> None:
    """Set JW levels 1 and 2 (callers then overwrite with stronger levels)."""
    out[sim >= low] = 1
    out[sim >= high] = 2


def forename_levels(L: Prepared, R: Prepared, li: np.ndarray, ri: np.ndarray, workers: int) -> np.ndarray:
    """Forename levels (see module docstring)."""
    a, b = L.code("forename")[li], R.code("forename")[ri]
    out = np.zeros(len(li), dtype=np.int8)
    sim = _on_distinct(L.forename, R.forename, li, ri, _jaro_winkler(workers))
    out[sim >= 0.80] = 1
    am, bm = L.code("middle")[li], R.code("middle")[ri]
    forward, backward = (a == bm) & (a != 0), (am == b) & (b != 0)
    out[forward | backward] = 2
    out[sim >= 0.92] = 3
    out[forward & backward] = 4
    out[_on_distinct(L.forename, R.forename, li, ri, _variants).astype(bool)] = 5
    out[a == b] = 6
    out[(a == 0) | (b == 0)] = -1
    return out


def surname_levels(L: Prepared, R: Prepared, li: np.ndarray, ri: np.ndarray, workers: int) -> np.ndarray:
    """Surname levels (see module docstring)."""
    a, b = L.code("surname")[li], R.code("surname")[ri]
    out = np.zeros(len(li), dtype=np.int8)
    sim = _on_distinct(L.surname, R.surname, li, ri, _jaro_winkler(workers))
    _string_levels(sim, out, 0.92, 0.80)
    # Which (left, right) surnames share a part or a former surname: on distinct pairs of
    # (surname, former) x (surname) only, and the sets built once per distinct value.
    left_key = L.surname + "|" + L.alt_surname
    part_sets = _distinct_sets(left_key, L.surname, L.surname_parts, L.alt_surname)
    right_sets = _distinct_sets(R.surname, R.surname, R.surname_parts, None)

    def shares(ua: np.ndarray, ub: np.ndarray) -> np.ndarray:
        return np.fromiter(
            (not part_sets[x].isdisjoint(right_sets[y]) for x, y in zip(ua, ub, strict=True)), bool, len(ua)
        )

    out[_on_distinct(left_key, R.surname, li, ri, shares).astype(bool)] = 3
    out[a == b] = 4
    out[(a == 0) | (b == 0)] = -1
    return out


def _distinct_sets(
    key: np.ndarray, whole: np.ndarray, parts: np.ndarray, alt: np.ndarray | None
) -> dict[str, set[str]]:
    _, first = np.unique(key.astype(str), return_index=True)
    sets = {}
    for i in first:
        sets[key[i]] = {whole[i], *parts[i], *(() if alt is None else (alt[i],))} - {""}
    return sets


def dob_levels(L: Prepared, R: Prepared, li: np.ndarray, ri: np.ndarray) -> np.ndarray:
    """Date-of-birth levels (see module docstring)."""
    a, b = L.dob[li], R.dob[ri]
    da, db = L.dob_days[li], R.dob_days[ri]
    out = np.zeros(len(li), dtype=np.int8)
    gap = np.abs(da - db)
    out[gap <= 366] = 1
    one_digit = (L.digits()[li] != R.digits()[ri]).sum(axis=1) == 1
    out[one_digit | (gap == 1)] = 2
    transposed = (a[:, 0] == b[:, 0]) & (a[:, 1] == b[:, 2]) & (a[:, 2] == b[:, 1]) & (a[:, 1] != a[:, 2])
    out[transposed] = 3
    out[gap == 0] = 4
    out[(da == MISSING_DAYS) | (db == MISSING_DAYS)] = -1
    return out


def sex_levels(L: Prepared, R: Prepared, li: np.ndarray, ri: np.ndarray) -> np.ndarray:
    """Sex levels: 1 same, 0 different, -1 unknown on either side."""
    a, b = L.sex[li], R.sex[ri]
    out = (a == b).astype(np.int8)
    out[(a == 0) | (b == 0)] = -1
    return out


def middle_levels(L: Prepared, R: Prepared, li: np.ndarray, ri: np.ndarray, workers: int) -> np.ndarray:
    """Middle-name levels; missing on either side (registers often drop it) is null."""
    a, b = L.code("middle")[li], R.code("middle")[ri]
    out = np.zeros(len(li), dtype=np.int8)
    both = np.flatnonzero((a != 0) & (b != 0))  # registers often drop it: compare only where held
    if len(both):
        lj, rj = li[both], ri[both]
        close = _on_distinct(L.middle, R.middle, lj, rj, _jaro_winkler(workers)) >= 0.88
        close |= _on_distinct(L.middle, R.middle, lj, rj, _variants).astype(bool)
        out[both[close]] = 1
    out[a == b] = 2
    out[(a == 0) | (b == 0)] = -1
    return out


def location_levels(L: Prepared, R: Prepared, li: np.ndarray, ri: np.ndarray, workers: int) -> np.ndarray:
    """Location levels from postcode and address together (see module docstring)."""
    pa, pb = L.code("postcode")[li], R.code("postcode")[ri]
    ha, hb = L.code("house")[li], R.code("house")[ri]
    addr_a, addr_b = L.code("address")[li], R.code("address")[ri]
    out = np.zeros(len(li), dtype=np.int8)
    district_a, sector_a = L.code("district")[li], L.code("sector")[li]
    out[(district_a == R.code("district")[ri]) & (district_a != 0)] = 1
    out[(sector_a == R.code("sector")[ri]) & (sector_a != 0)] = 2
    # Address agreement: same house number (or both without one) and a near-identical house and
    # street line (normalised Indel similarity >= 90: a typo, not a different street); only worth
    # computing where the house numbers already agree.
    candidates = np.flatnonzero((ha == hb) & (addr_a != 0) & (addr_b != 0))
    address_agrees = np.zeros(len(li), dtype=bool)
    if len(candidates):
        sim = _on_distinct(
            L.address, R.address, li[candidates], ri[candidates],
            lambda ua, ub: process.cpdist(list(ua), list(ub), scorer=fuzz.ratio, workers=workers),
        )
        address_agrees[candidates] = sim >= 90.0
    out[address_agrees] = 3
    same_postcode = (pa == pb) & (pa != 0)
    out[same_postcode] = 4
    out[same_postcode & address_agrees] = 5
    no_location_a = (pa == 0) & (addr_a == 0)
    no_location_b = (pb == 0) & (addr_b == 0)
    out[no_location_a | no_location_b] = -1
    return out


def compare(L: Prepared, R: Prepared, li: np.ndarray, ri: np.ndarray, workers: int = -1) -> np.ndarray:
    """The (n_pairs, len(COMPARISONS)) int8 matrix of levels for the given pairs.

    Args:
        L: left features.
        R: right features.
        li: left row of each pair.
        ri: right row of each pair.
        workers: rapidfuzz threads.
    """
    forename = forename_levels(L, R, li, ri, workers)
    middle = middle_levels(L, R, li, ri, workers)
    middle[np.isin(forename, FORENAME_SWAPS)] = -1
    columns = [
        forename,
        surname_levels(L, R, li, ri, workers),
        dob_levels(L, R, li, ri),
        sex_levels(L, R, li, ri),
        middle,
        location_levels(L, R, li, ri, workers),
    ]
    return np.stack(columns, axis=1) if len(li) else np.empty((0, len(COMPARISONS)), dtype=np.int8)
