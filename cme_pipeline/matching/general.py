"""The ``general`` profile of ``link``: any two files of people, adults too, heavily corrupted.

The pipeline's profile (``children``) is tuned for school-age children against LA registers:
dates are valid ISO dates, names are rarely swapped, postcodes are UK postcodes, and twins make a
forename disagreement decisive. ``cme link`` is sold for any two person files, where none of that
holds (public benchmarks such as FEBRL corrupt dates digit by digit, swap forename and surname,
mistype postcodes and addresses, and blank fields). This profile keeps the engine (the same six
comparisons, Fellegi-Sunter weights, one-to-one assignment, bands and guards) and changes what
the corruption defeats:

- **Blocking** adds rules that survive a bad date *and* a bad name at once: forename soundex
  with postcode; house number with postcode; the unordered {forename, surname} soundex pair (a
  swap keeps it) with the year as written, the {day, month} as written, the postcode, the house
  number or the area (UK postcode district, else the postcode's first two characters, which a
  transposed 2227/2272 keeps); surname or forename soundex with house number and area, year or
  {day, month}. One wrong digit spoils the year or the day and month, rarely both.
- **Dates** are compared as written, digit for digit, so an impossible date (``1931-01-75``, a
  typo of 1931-07-15) still agrees partly instead of counting as missing: exact; day and month
  transposed; one edit (a digit wrong or two adjacent digits swapped) or a day apart; two edits
  or within a year; other.
- **Forename and surname swapped** are compared crosswise; where that agrees better than the
  straight comparison, the crosswise levels (capped at the Jaro-Winkler >= 0.92 level, so a swap
  weighs less than an exact agreement and takes no term-frequency bonus) replace both.
- **Location** also agrees when the postcode is one edit away (the ``sector`` level) and when
  the whole address agrees loosely (token-sorted similarity >= 85, the ``address`` level), so a
  typo or reordered address lines still count.
- **EM for every comparison**, without the pipeline's twin clamp (which holds a forename
  disagreement's m at its prior: right for twins, wrong for adults whose forenames are mistyped).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, JaroWinkler

from cme_pipeline.matching import compare as base
from cme_pipeline.matching import model as fs
from cme_pipeline.matching.blocking import RULES, block
from cme_pipeline.matching.compare import COMPARISONS
from cme_pipeline.matching.config import LinkConfig
from cme_pipeline.matching.normalise import as_text, clean_text, map_unique
from cme_pipeline.matching.prepare import MISSING_DAYS, Prepared, prepare
from cme_pipeline.matching.twins import guarded, in_twin_group
from cme_pipeline.progress import say, track
from cme_pipeline.schemas import LINK_PAIRS

Y, MD = "year_written", "month_day_written"
# Each extra rule pairs a name key or the house number with a key a typo rarely spoils at the
# same time; none is a name key alone, which at 50,000 records makes millions of pairs.
RULES_GENERAL: tuple[tuple[str, ...], ...] = (
    *RULES,
    ("forename_sound", "postcode"),
    ("house", "postcode"),
    *(("name_set", other) for other in (Y, MD, "postcode", "house", "area")),
    *((name, "house", other) for name in ("surname", "forename_sound") for other in ("area", Y, MD)),
)
FORENAME, SURNAME, DOB, LOCATION = (COMPARISONS.index(c) for c in ("forename", "surname", "dob", "location"))
_YEAR_FIRST = re.compile(r"^\s*(\d{4})\D?(\d{2})\D?(\d{2})\s*$")
CHUNK = 1_000_000
# Random pairs for u under this profile (``cme link`` passes it as ``LinkConfig.u_sample``): a
# tenth of the pipeline's million. Person files linked ad hoc are small, u's rare levels lean on
# the prior guesses anyway, and on the FEBRL sets 100,000 and 1,000,000 give exactly the same
# match-band pairs, at a third of the time (benchmarks/README.md).
U_SAMPLE = 100_000


@dataclass
class GeneralPrepared(Prepared):
    """``Prepared`` plus what the general comparisons need."""

    dob_digits: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))  # 8 digits or ""
    place: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))  # whole address, cleaned
    dob_matrix: np.ndarray = field(default_factory=lambda: np.empty((0, 8), dtype=np.int8))  # the digits; -1 missing


def _digits(text: str) -> str:
    """The date's eight digits, year first as canonical dates are written, or "" (a date in
    another order, such as 31/02/2014, has no digit-for-digit meaning here)."""
    m = _YEAR_FIRST.match(text)
    return "".join(m.groups()) if m else ""


def prepare_general(frame: pd.DataFrame) -> GeneralPrepared:
    """``prepare`` plus the date as written and the whole address."""
    p = prepare(frame)
    n = len(frame)

    def col(name: str) -> np.ndarray:
        return as_text(frame[name] if name in frame.columns else None, n)

    digits = map_unique(col("dob"), _digits)
    matrix = np.full((n, 8), -1, dtype=np.int8)
    held = np.flatnonzero(digits != "")
    if len(held):
        matrix[held] = np.frombuffer("".join(digits[held]).encode("ascii"), dtype=np.uint8).reshape(-1, 8) - 48
    # An impossible date written year first is compared digit for digit, so it is not lost.
    kept = int(((p.dob[:, 0] < 0) & (digits != "")).sum())
    p.unparseable -= kept
    return GeneralPrepared(
        **{f.name: getattr(p, f.name) for f in fields(Prepared)},
        dob_digits=digits,
        place=map_unique(col("address"), clean_text),
        dob_matrix=matrix,
    )


def _scores(a: np.ndarray, b: np.ndarray, li: np.ndarray, ri: np.ndarray, scorer: Callable[..., Any], workers: int) -> np.ndarray:
    def run(ua: np.ndarray, ub: np.ndarray) -> np.ndarray:
        return process.cpdist(list(ua), list(ub), scorer=scorer, workers=workers)

    return base._on_distinct(a, b, li, ri, run)


def dob_levels(L: GeneralPrepared, R: GeneralPrepared, li: np.ndarray, ri: np.ndarray, workers: int) -> np.ndarray:
    """Date levels on the digits as written (see the module docstring)."""
    a, b = L.dob_matrix[li], R.dob_matrix[ri]
    out = np.zeros(len(li), dtype=np.int8)
    if len(li) == 0:
        return out
    differ = (a != b).sum(axis=1)
    # Two edits change at most four positions: the edit distance is only worth computing there.
    near = np.flatnonzero((differ > 0) & (differ <= 4))
    edits = np.full(len(li), 9)
    edits[near] = _scores(L.dob_digits, R.dob_digits, li[near], ri[near], OSA.distance, workers)
    da, db = L.dob_days[li], R.dob_days[ri]
    gap = np.where((da != MISSING_DAYS) & (db != MISSING_DAYS), np.abs(da - db), 10**9)
    out[(edits == 2) | (gap <= 366)] = 1
    out[(edits == 1) | (gap == 1)] = 2
    same_year = (a[:, :4] == b[:, :4]).all(axis=1)
    month_day = (a[:, 4:6] == b[:, 6:8]).all(axis=1) & (a[:, 6:8] == b[:, 4:6]).all(axis=1)
    out[same_year & month_day & (a[:, 4:6] != a[:, 6:8]).any(axis=1)] = 3
    out[differ == 0] = 4
    out[(L.dob_digits[li] == "") | (R.dob_digits[ri] == "")] = -1
    return out


def swap_names(L: Prepared, R: Prepared, li: np.ndarray, ri: np.ndarray, gamma: np.ndarray, workers: int) -> None:
    """Replace the name levels by crosswise ones where forename and surname look swapped.

    A whole swap (both names crosswise) and a half one (one side's forename written as the
    other's surname, the other name lost) both count: the crosswise levels replace the straight
    ones wherever they agree more.
    """
    jw = JaroWinkler.normalized_similarity
    fore_sur = _scores(L.forename, R.surname, li, ri, jw, workers)
    sur_fore = _scores(L.surname, R.forename, li, ri, jw, workers)
    fore = np.where(fore_sur >= 0.92, 3, np.where(fore_sur >= 0.80, 1, 0))
    sur = np.where(sur_fore >= 0.92, 2, np.where(sur_fore >= 0.80, 1, 0))
    straight = np.maximum(gamma[:, FORENAME], 0) + np.maximum(gamma[:, SURNAME], 0)
    crosswise = ((fore_sur >= 0.80) & (sur_fore >= 0.80)) | (fore_sur >= 0.92) | (sur_fore >= 0.92)
    better = crosswise & (fore + sur > straight)
    gamma[better, FORENAME] = fore[better]
    gamma[better, SURNAME] = sur[better]


def location_levels(L: GeneralPrepared, R: GeneralPrepared, li: np.ndarray, ri: np.ndarray, workers: int) -> np.ndarray:
    """The pipeline's location levels, plus a postcode one edit away and a loose whole address."""
    out = base.location_levels(L, R, li, ri, workers)
    pa, pb = L.postcode[li], R.postcode[ri]
    near = np.zeros(len(li), dtype=bool)
    both = np.flatnonzero((pa != "") & (pb != "") & (out < 2) & (out >= 0))
    if len(both):
        near[both] = _scores(L.postcode, R.postcode, li[both], ri[both], OSA.distance, workers) == 1
    out[near] = 2
    agrees = np.zeros(len(li), dtype=bool)
    # Loose agreement only where the house number agrees (or is missing) or the postcode agrees
    # partly: two different houses in two different places are not one address however alike
    # their street names look, and random pairs mostly stop here, which keeps u cheap.
    ha, hb = L.house[li], R.house[ri]
    plausible = (ha == hb) | (ha == "") | (hb == "") | (out >= 1)
    held = np.flatnonzero(plausible & (L.place[li] != "") & (R.place[ri] != "") & (out != 3) & (out != 5))
    if len(held):
        agrees[held] = _scores(L.place, R.place, li[held], ri[held], fuzz.token_sort_ratio, workers) >= 85.0
    out[agrees & (out < 3)] = 3
    out[agrees & (out == 4)] = 5
    return out


def compare(L: GeneralPrepared, R: GeneralPrepared, li: np.ndarray, ri: np.ndarray, workers: int = -1) -> np.ndarray:
    """The general profile's level matrix (same comparisons and levels as ``compare.compare``)."""
    if len(li) == 0:
        return np.empty((0, len(COMPARISONS)), dtype=np.int8)
    gamma = base.compare(L, R, li, ri, workers)
    swap_names(L, R, li, ri, gamma, workers)
    gamma[:, DOB] = dob_levels(L, R, li, ri, workers)
    gamma[:, LOCATION] = location_levels(L, R, li, ri, workers)
    return gamma


def fit(L: GeneralPrepared, R: GeneralPrepared, config: LinkConfig) -> fs.LinkModel:
    """u from random pairs, m by EM for every comparison in two sessions, and the prior.

    Session A (same date as written) trains everything but the date; session B (same forename
    and surname) trains the date and the rest again; comparisons trained in both take the mean.
    """
    u = fs.estimate_u(L, R, config, compare)
    li, ri, share = fs._session_pairs(L, R, L.dob_digits, R.dob_digits, config, 1)
    gamma_a = compare(L, R, li, ri, config.workers)
    m_a, lam_a = fs._em(gamma_a, u, ("forename", "surname", "sex", "middle", "location"), config)
    lkey = np.where((L.forename != "") & (L.surname != ""), L.forename + "|" + L.surname, "")
    rkey = np.where((R.forename != "") & (R.surname != ""), R.forename + "|" + R.surname, "")
    li_b, ri_b, _ = fs._session_pairs(L, R, lkey, rkey, config, 2)
    m_b, _ = fs._em(compare(L, R, li_b, ri_b, config.workers), u, ("dob", "sex", "middle", "location"), config)
    return fs.combine_sessions(L, R, u, m_a, m_b, lam_a * len(gamma_a) / share)


def link(left: pd.DataFrame, right: pd.DataFrame, config: LinkConfig, progress: bool = False) -> pd.DataFrame:
    """``linker.link`` under the general profile (same arguments, same ``LINK_PAIRS`` result)."""
    from cme_pipeline.matching.linker import _bands  # the bands and guards are the pipeline's

    L, R = prepare_general(left), prepare_general(right)
    if progress and (L.unparseable or R.unparseable):
        say(f"unparseable values treated as missing: {L.unparseable} left, {R.unparseable} right")
    if len(L) == 0 or len(R) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LINK_PAIRS})
    candidates = block(L, R, RULES_GENERAL)
    if progress:
        say(f"blocking: {len(candidates)} candidate pairs from {len(L)} x {len(R)} records")
    model = fit(L, R, config)
    left_twins, right_twins = in_twin_group(L), in_twin_group(R)
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    slices = [slice(s, min(s + CHUNK, len(candidates))) for s in range(0, len(candidates), CHUNK)]
    for part in track(slices, len(slices), "scoring") if progress and slices else slices:
        li, ri = candidates.left[part], candidates.right[part]
        gamma = compare(L, R, li, ri, config.workers)
        weight = fs.contributions(model, L, R, li, ri, gamma, config.term_frequency).sum(axis=1)
        weight += model.prior_weight
        keep = fs.probability(weight) >= config.possible_threshold
        kept.append((li[keep], ri[keep], weight[keep],
                     guarded(left_twins, right_twins, li[keep], ri[keep], gamma[keep, FORENAME])))
    li, ri, w, guard = (np.concatenate([k[i] for k in kept]) if kept else np.empty(0) for i in range(4))
    li, ri, guard = li.astype(np.int64), ri.astype(np.int64), guard.astype(bool)
    band = _bands(li, ri, w, guard, config)
    out = pd.DataFrame({"left_id": L.record_id[li], "right_id": R.record_id[ri],
                        "probability": fs.probability(w), "band": band})
    out = out.sort_values(["probability", "left_id", "right_id"], ascending=[False, True, True])
    return out.reset_index(drop=True)[list(LINK_PAIRS)]
