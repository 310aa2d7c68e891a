"""Turn a frame in canonical person columns into the normalised features matching compares."""

from __future__ import annotations

from dataclasses import dataclass, field

import jellyfish
import numpy as np
import pandas as pd

from cme_pipeline.matching import names
from cme_pipeline.matching.normalise import (
    address_parts,
    as_text,
    given_key,
    map_unique,
    parse_dates,
    postcode_parts,
    sex_codes,
    surname_key,
    surname_parts,
)
from cme_pipeline.schemas import HEALTH_EXTRACT

# The health extract's former surname travels with the canonical columns when present (it is an
# extra column, not part of the canonical contract): a register may still hold the old name.
ALT_SURNAME = "former_surname"
assert ALT_SURNAME in HEALTH_EXTRACT


@dataclass
class Prepared:
    """Normalised features of one side, one entry per record, all numpy arrays."""

    record_id: np.ndarray
    forename: np.ndarray  # first given name, cleaned
    middle: np.ndarray  # first middle name, cleaned
    surname: np.ndarray  # whole surname, spaces removed
    surname_parts: np.ndarray  # tuples of family-name parts
    alt_surname: np.ndarray  # former surname key or ""
    dob: np.ndarray  # (n, 3) year, month, day; -1 missing
    dob_text: np.ndarray  # "YYYYMMDD" or ""
    dob_days: np.ndarray  # days since 1970-01-01; a large negative number when missing
    sex: np.ndarray  # 0 unknown, 1 M, 2 F
    postcode: np.ndarray
    sector: np.ndarray
    district: np.ndarray
    house: np.ndarray  # house number token or ""
    address: np.ndarray  # normalised address tokens or ""
    unparseable: int  # non-empty values that had to be treated as missing
    _codes: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.record_id)

    def code(self, name: str) -> np.ndarray:
        """A 64-bit hash of a text field per record, 0 where empty (computed once).

        Equality of millions of candidate pairs is then an integer comparison, not a Python
        string comparison; the same value hashes alike on both sides. A collision (about 1 in
        10^19 per pair) could only make two different values look equal.
        """
        if name not in self._codes:
            values = getattr(self, name)
            codes = pd.util.hash_array(values.astype(object), categorize=True).astype(np.uint64)
            codes[values == ""] = 0
            codes[(values != "") & (codes == 0)] = 1
            self._codes[name] = codes
        return self._codes[name]

    def digits(self) -> np.ndarray:
        """The dob as (n, 8) digits of YYYYMMDD (int8; garbage where the dob is missing)."""
        if "_digits" not in self._codes:
            number = self.dob[:, 0].astype(np.int64) * 10_000 + self.dob[:, 1] * 100 + self.dob[:, 2]
            powers = 10 ** np.arange(7, -1, -1, dtype=np.int64)
            self._codes["_digits"] = ((number[:, None] // powers) % 10).astype(np.int8)
        return self._codes["_digits"]


MISSING_DAYS = -(10**9)


def dob_days(dob: np.ndarray) -> np.ndarray:
    """Days since the epoch of (year, month, day) rows; ``MISSING_DAYS`` where missing."""
    out = np.full(len(dob), MISSING_DAYS, dtype=np.int64)
    ok = dob[:, 0] >= 0
    if ok.any():
        dates = pd.to_datetime(
            pd.DataFrame({"year": dob[ok, 0], "month": dob[ok, 1], "day": dob[ok, 2]})
        )
        out[ok] = (dates - pd.Timestamp("1970-01-01")).dt.days.to_numpy()
    return out


def _soundex(value: str) -> str:
    return jellyfish.soundex(value) if value else ""


def surname_codes(prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Blocking keys from surnames: the soundex of the whole name and of each part.

    Returns (row, key) pairs, several rows per record for a double-barrelled name, so that a
    register holding one part still meets the extract's full name.
    """
    rows: list[int] = []
    keys: list[str] = []
    cache: dict[tuple[str, tuple[str, ...], str], set[str]] = {}
    for i, (whole, parts, alt) in enumerate(
        zip(prepared.surname, prepared.surname_parts, prepared.alt_surname, strict=True)
    ):
        key = (whole, parts, alt)
        codes = cache.get(key)
        if codes is None:
            codes = {_soundex(v) for v in (whole, alt, *parts) if v} - {""}
            cache[key] = codes
        for code in codes:
            rows.append(i)
            keys.append(code)
    return np.array(rows, dtype=np.int64), np.array(keys, dtype=object)


def forename_codes(prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Blocking keys from given names: every root of the forename (see ``names``)."""
    roots = map_unique(prepared.forename, lambda v: tuple(sorted(names.roots(v))) if v else ())
    lengths = np.fromiter((len(r) for r in roots), dtype=np.int64, count=len(roots))
    rows = np.repeat(np.arange(len(roots), dtype=np.int64), lengths)
    keys = np.array([k for r in roots for k in r], dtype=object)
    return rows, keys


def prepare(frame: pd.DataFrame) -> Prepared:
    """Normalise a frame in canonical person columns (missing columns count as empty).

    Args:
        frame: ``record_id`` plus any of the canonical person columns, and optionally
            ``former_surname``.
    """
    n = len(frame)

    def col(name: str) -> np.ndarray:
        return as_text(frame[name] if name in frame.columns else None, n)

    record_id = col("record_id")
    forename_raw, middle_raw, surname_raw = col("forename"), col("middle_names"), col("surname")
    dob_raw, postcode_raw = col("dob"), col("postcode")
    dob = parse_dates(dob_raw)
    dob_ok = dob[:, 0] >= 0
    dob_text = np.full(n, "", dtype=object)
    if n:
        dob_text[dob_ok] = [f"{y:04d}{m:02d}{d:02d}" for y, m, d in dob[dob_ok]]
    pcs = map_unique(postcode_raw, postcode_parts)
    addr = map_unique(col("address"), address_parts)
    sex_raw = col("sex")
    sex = sex_codes(sex_raw)
    unparseable = int(((dob_raw != "") & ~dob_ok).sum()) + int(((sex_raw != "") & (sex == 0)).sum())
    if n:
        unparseable -= int(np.isin(sex_raw, ["U", "u"]).sum())  # U is a valid "unknown"

    def pick(parts: np.ndarray, k: int) -> np.ndarray:
        out = np.empty(n, dtype=object)
        out[:] = [p[k] for p in parts] if n else []
        return out

    return Prepared(
        record_id=record_id,
        forename=map_unique(forename_raw, given_key),
        middle=map_unique(middle_raw, given_key),
        surname=map_unique(surname_raw, surname_key),
        surname_parts=map_unique(surname_raw, surname_parts),
        alt_surname=map_unique(col(ALT_SURNAME), surname_key),
        dob=dob,
        dob_text=dob_text,
        dob_days=dob_days(dob),
        sex=sex,
        postcode=pick(pcs, 0),
        sector=pick(pcs, 1),
        district=pick(pcs, 2),
        house=pick(addr, 0),
        address=pick(addr, 1),
        unparseable=unparseable,
    )

