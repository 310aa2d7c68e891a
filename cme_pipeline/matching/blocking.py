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
=======================================  ==========================================================

Soundex keeps the first letter and codes the rest loosely, so most typos keep the key; a
double-barrelled surname is filed under each part; a forename under each of its variant roots
(``names.roots``), so David meets Dafydd and Dai.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cme_pipeline.matching.prepare import Prepared, forename_codes, surname_codes

Keys = tuple[np.ndarray, np.ndarray]  # (row, key) pairs; a record may have several rows


def _scalar(values: np.ndarray) -> Keys:
    ok = np.flatnonzero(values != "")
    return ok.astype(np.int64), values[ok]


def _dob(p: Prepared) -> Keys:
    return _scalar(p.dob_text)


def _year(p: Prepared) -> Keys:
    ok = np.flatnonzero(p.dob[:, 0] >= 0)
    return ok.astype(np.int64), p.dob[ok, 0].astype(object)


def _year_month(p: Prepared) -> Keys:
    ok = np.flatnonzero(p.dob[:, 0] >= 0)
    return ok.astype(np.int64), (p.dob[ok, 0] * 100 + p.dob[ok, 1]).astype(object)


def _dob_unordered(p: Prepared) -> Keys:
    """Year and the {day, month} set: a transposed date keeps this key.

    Only dates that can be transposed (day 12 or less, day != month) get one, which keeps this
    rule's blocks from repeating ``dob + surname`` for the other 60% of dates.
    """
    ok = np.flatnonzero((p.dob[:, 0] >= 0) & (p.dob[:, 2] <= 12) & (p.dob[:, 2] != p.dob[:, 1]))
    day, month = p.dob[ok, 2], p.dob[ok, 1]
    low, high = np.minimum(day, month), np.maximum(day, month)
    return ok.astype(np.int64), (p.dob[ok, 0] * 10_000 + low * 100 + high).astype(object)


KEY_FUNCTIONS: dict[str, Callable[[Prepared], Keys]] = {
    "dob": _dob,
    "year": _year,
    "year_month": _year_month,
    "dob_unordered": _dob_unordered,
    "postcode": lambda p: _scalar(p.postcode),
    "surname": surname_codes,
    "forename": forename_codes,
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


@dataclass
class Candidates:
    """Candidate pairs as row positions into the left and right ``Prepared``."""

    left: np.ndarray
    right: np.ndarray
    per_rule: dict[str, int]  # pairs each rule produced before de-duplication

    def __len__(self) -> int:
        return len(self.left)


def _combined_keys(
    left: Prepared, right: Prepared, rule: tuple[str, ...], cache: dict[tuple[str, int], Keys]
) -> tuple[Keys, Keys]:
    """(row, int key) for each side, the key being the combination of the rule's parts."""
    sides = []
    for side_index, prepared in enumerate((left, right)):
        frame = None
        for part in rule:
            key = (part, side_index)
            if key not in cache:
                cache[key] = KEY_FUNCTIONS[part](prepared)
            rows, values = cache[key]
            piece = pd.DataFrame({"row": rows, part: values})
            frame = piece if frame is None else frame.merge(piece, on="row")
        assert frame is not None
        sides.append(frame)
    both = pd.concat(sides, ignore_index=True)
    # One integer per distinct combination, shared by both sides.
    code = both.groupby(list(rule), sort=False).ngroup().to_numpy()
    n_left = len(sides[0])
    return (
        (sides[0]["row"].to_numpy(), code[:n_left]),
        (sides[1]["row"].to_numpy(), code[n_left:]),
    )


def block(left: Prepared, right: Prepared, rules: tuple[tuple[str, ...], ...] = RULES) -> Candidates:
    """All candidate pairs under any of ``rules``, each pair once.

    Args:
        left: the left side's features.
        right: the right side's features.
        rules: blocking rules, each a tuple of key names from ``KEY_FUNCTIONS``.
    """
    cache: dict[tuple[str, int], Keys] = {}
    found: list[np.ndarray] = []
    per_rule: dict[str, int] = {}
    n_right = max(len(right), 1)
    for rule in rules:
        (lrows, lkey), (rrows, rkey) = _combined_keys(left, right, rule, cache)
        joined = pd.DataFrame({"k": lkey, "l": lrows}).merge(pd.DataFrame({"k": rkey, "r": rrows}), on="k")
        pair = joined["l"].to_numpy(dtype=np.int64) * n_right + joined["r"].to_numpy(dtype=np.int64)
        pair = pd.unique(pair)
        per_rule["+".join(rule)] = len(pair)
        found.append(pair)
    allpairs = pd.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)
    allpairs = np.sort(allpairs)
    return Candidates(allpairs // n_right, allpairs % n_right, per_rule)
