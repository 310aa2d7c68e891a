"""Blocking: the candidate pairs worth comparing, from several keys so one bad field loses none.

Each rule is an exact join on a few derived keys. A true pair is lost only if it disagrees on some
key of *every* rule. The rules below are chosen against the errors registers really have:

=======================================  ==========================================================
rule                                     still finds the pair when ...
=======================================  ==========================================================
dob + surname sound                      the forename is a nickname/typo/swapped, the child moved
dob + forename root                      the surname changed or is mistyped
dob + postcode                           both names are wrong (step-parent's name and a nickname)
year, month + surname sound + forename   a day slipped by a digit (the month stays)
year, day-and-month set + surname sound  day and month are transposed
birth year + postcode + forename root    the dob is wrong and the surname changed
postcode + surname sound                 the dob is wrong and the forename is a variant
surname sound + forename root            the dob is missing or unparseable on one side (this
                                         rule joins only records without a dob to the other side)
=======================================  ==========================================================

Soundex keeps the first letter and codes the rest loosely, so most typos keep the key; a
double-barrelled surname is filed under each part; a forename under each of its variant roots
(``names.roots``), so David meets Dafydd and Dai.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jellyfish
import numpy as np
import pandas as pd

from cme_pipeline.matching.normalise import map_unique
from cme_pipeline.matching.prepare import Prepared, forename_codes, surname_codes

Keys = tuple[np.ndarray, np.ndarray]  # (row, uint64 key); a record may have several rows
_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier: spreads one key before mixing


def _present(codes: np.ndarray) -> Keys:
    ok = np.flatnonzero(codes != 0)
    return ok.astype(np.int64), codes[ok]


def _dob_ints(p: Prepared, values: np.ndarray, usable: np.ndarray) -> Keys:
    ok = np.flatnonzero(usable & (p.dob[:, 0] >= 0))
    return ok.astype(np.int64), values[ok].astype(np.uint64) + np.uint64(1)


def _year(p: Prepared) -> Keys:
    return _dob_ints(p, p.dob[:, 0], np.ones(len(p), dtype=bool))


def _year_month(p: Prepared) -> Keys:
    return _dob_ints(p, p.dob[:, 0] * 100 + p.dob[:, 1], np.ones(len(p), dtype=bool))


def _dob_unordered(p: Prepared) -> Keys:
    """Year and the {day, month} set: a transposed date keeps this key.

    Only dates that can be transposed (day 12 or less, day != month) get one, which keeps this
    rule's blocks from repeating ``dob + surname`` for the other 60% of dates.
    """
    day, month = p.dob[:, 2], p.dob[:, 1]
    low, high = np.minimum(day, month), np.maximum(day, month)
    return _dob_ints(p, p.dob[:, 0] * 10_000 + low * 100 + high, (day <= 12) & (day != month))


def _hashed(keys: Keys) -> Keys:
    rows, values = keys
    return rows, pd.util.hash_array(values.astype(object), categorize=True).astype(np.uint64)


def _soundex(value: str) -> str:
    return jellyfish.soundex(value) if value else ""


def _forename_sound(p: Prepared) -> Keys:
    """Soundex of the forename: survives a typo a variant root does not (``mikhvyla``)."""
    return _hashed(_present_text(map_unique(p.forename, _soundex)))


def _name_set(p: Prepared) -> Keys:
    """The unordered {forename soundex, surname soundex}: forename and surname swapped keep it."""
    sounds = map_unique(p.forename, _soundex) + "|" + map_unique(p.surname, _soundex)
    both = (p.forename != "") & (p.surname != "")
    key = map_unique(sounds, lambda v: "|".join(sorted(v.split("|"))))
    return _hashed(_present_text(np.where(both, key, "")))


def _written(p: Prepared, part: Callable[[str], str]) -> Keys:
    """A part of the date's eight digits as written (the general profile keeps impossible dates
    as digits, ``dob_digits``; otherwise the valid date's)."""
    digits = np.asarray(getattr(p, "dob_digits", p.dob_text), dtype=object)
    return _hashed(_present_text(map_unique(digits, lambda d: part(d) if d else "")))


def _area(p: Prepared) -> Keys:
    """A wide area that survives a mistyped postcode: the UK postcode district (CF14), else the
    first two characters (an Australian 2227 typed 2272 keeps 22)."""
    head = map_unique(p.postcode, lambda v: v[:2])
    return _hashed(_present_text(np.where(p.district != "", p.district, head)))


def _present_text(values: np.ndarray) -> Keys:
    ok = np.flatnonzero(values != "")
    return ok.astype(np.int64), values[ok]


KEY_FUNCTIONS: dict[str, Callable[[Prepared], Keys]] = {
    "dob": lambda p: _present(p.code("dob_text")),
    "year": _year,
    "year_month": _year_month,
    "dob_unordered": _dob_unordered,
    "postcode": lambda p: _present(p.code("postcode")),
    "surname": lambda p: _hashed(surname_codes(p)),
    "forename": lambda p: _hashed(forename_codes(p)),
    # Keys of the general profile (``matching.general``), for adult data with heavy corruption.
    "forename_sound": _forename_sound,
    "name_set": _name_set,
    "house": lambda p: _hashed(_present_text(p.house)),
    # One wrong digit spoils the year or the day and month, rarely both: a key on each.
    "year_written": lambda p: _written(p, lambda d: d[:4]),
    "month_day_written": lambda p: _written(p, lambda d: "".join(sorted((d[4:6], d[6:8])))),
    "area": _area,
}

RULES: tuple[tuple[str, ...], ...] = (
    ("dob", "surname"),
    ("dob", "forename"),
    ("dob", "postcode"),
    ("year_month", "surname", "forename"),
    ("dob_unordered", "surname"),
    ("year", "postcode", "forename"),
    ("postcode", "surname"),
)
# Rules too coarse for everyone, applied only where one side of the pair has no usable dob.
RULES_WITHOUT_DOB: tuple[tuple[str, ...], ...] = (("surname", "forename"),)


@dataclass
class Candidates:
    """Candidate pairs as row positions into the left and right ``Prepared``."""

    left: np.ndarray
    right: np.ndarray
    per_rule: dict[str, int]  # pairs each rule produced before de-duplication

    def __len__(self) -> int:
        return len(self.left)


def _rule_keys(prepared: Prepared, rule: tuple[str, ...], cache: dict[str, Keys]) -> Keys:
    """(row, key) for one side, the key mixing the rule's parts (several rows per record when
    a part has several values, e.g. a double-barrelled surname)."""
    rows: np.ndarray | None = None
    key: np.ndarray | None = None
    for part in rule:
        if part not in cache:
            cache[part] = KEY_FUNCTIONS[part](prepared)
        part_rows, part_keys = cache[part]
        if rows is None or key is None:
            rows, key = part_rows, part_keys
            continue
        joined = pd.DataFrame({"row": rows, "a": key}).merge(
            pd.DataFrame({"row": part_rows, "b": part_keys}), on="row"
        )
        rows = joined["row"].to_numpy()
        key = (joined["a"].to_numpy(dtype=np.uint64) * _MIX) ^ joined["b"].to_numpy(dtype=np.uint64)
    assert rows is not None and key is not None
    return rows, key


def _join(lrows: np.ndarray, lkey: np.ndarray, rrows: np.ndarray, rkey: np.ndarray, n_right: int) -> np.ndarray:
    joined = pd.DataFrame({"k": lkey, "l": lrows}).merge(pd.DataFrame({"k": rkey, "r": rrows}), on="k")
    pair = joined["l"].to_numpy(dtype=np.int64) * n_right + joined["r"].to_numpy(dtype=np.int64)
    return np.asarray(pd.unique(pair))


def block(left: Prepared, right: Prepared, rules: tuple[tuple[str, ...], ...] = RULES) -> Candidates:
    """All candidate pairs under any of ``rules``, each pair once.

    Args:
        left: the left side's features.
        right: the right side's features.
        rules: blocking rules, each a tuple of key names from ``KEY_FUNCTIONS``.
    """
    left_cache: dict[str, Keys] = {}
    right_cache: dict[str, Keys] = {}
    found: list[np.ndarray] = []
    per_rule: dict[str, int] = {}
    n_right = max(len(right), 1)
    for rule in rules:
        lrows, lkey = _rule_keys(left, rule, left_cache)
        rrows, rkey = _rule_keys(right, rule, right_cache)
        pair = _join(lrows, lkey, rrows, rkey, n_right)
        per_rule["+".join(rule)] = len(pair)
        found.append(pair)
    left_no_dob, right_no_dob = left.dob[:, 0] < 0, right.dob[:, 0] < 0
    for rule in RULES_WITHOUT_DOB if left_no_dob.any() or right_no_dob.any() else ():
        lrows, lkey = _rule_keys(left, rule, left_cache)
        rrows, rkey = _rule_keys(right, rule, right_cache)
        lsel, rsel = left_no_dob[lrows], right_no_dob[rrows]
        pair = np.concatenate([
            _join(lrows[lsel], lkey[lsel], rrows, rkey, n_right),
            _join(lrows, lkey, rrows[rsel], rkey[rsel], n_right),
        ])
        per_rule["+".join(rule) + " (no dob)"] = len(pair)
        found.append(pair)
    allpairs = pd.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)
    allpairs = np.sort(allpairs)
    return Candidates(allpairs // n_right, allpairs % n_right, per_rule)
