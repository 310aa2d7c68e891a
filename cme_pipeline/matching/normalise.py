"""Normalisation of names, dates, postcodes and addresses, on whole columns at once.

Every function takes and returns arrays or Series. Values repeat heavily (a few thousand distinct
names across hundreds of thousands of children), so the string work runs once per distinct value
and is mapped back, which is what makes all-Wales normalisation take seconds, not minutes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import numpy as np
import pandas as pd

_NON_ALNUM_SPACE = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")
# Welsh patronymic particles and other name particles that are not the family name itself.
PARTICLES = frozenset({"ap", "ab", "ferch", "verch"})
_UK_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")

# Street-type words and their short forms: both spellings map to one token, so "St David's Rd"
# and "Saint Davids Road" agree. "st" is both Street and Saint; mapping both to one token is
# harmless because it is compared as a token, never expanded.
_ADDRESS_TOKENS = {
    "street": "st", "saint": "st", "road": "rd", "avenue": "ave", "av": "ave", "lane": "ln",
    "close": "cl", "drive": "dr", "crescent": "cres", "terrace": "ter", "terr": "ter",
    "place": "pl", "court": "ct", "gardens": "gdns", "grove": "gr", "square": "sq",
    "heights": "hts", "mount": "mt", "park": "pk", "way": "wy", "flat": "flat", "apartment": "flat",
}


def fold(text: str) -> str:
    """Lower case, diacritics removed (Siân -> sian, Llŷr -> llyr, Hâf -> haf)."""
    if text.isascii():  # the common case, ten times faster than decomposing
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def clean_text(text: str) -> str:
    """Fold, then turn hyphens and other separators into spaces and drop other punctuation.

    Apostrophes vanish (O'Brien -> obrien) while hyphens separate (Lloyd-Jones -> lloyd jones),
    because a hyphen joins two names and an apostrophe does not.
    """
    folded = fold(text).replace("-", " ").replace("/", " ").replace(",", " ").replace(".", " ")
    return _SPACES.sub(" ", _NON_ALNUM_SPACE.sub("", folded)).strip()


def as_text(values: pd.Series | None, n: int) -> np.ndarray:
    """A column as an object array of str; missing, NaN and non-strings become ""."""
    if values is None:
        return np.full(n, "", dtype=object)
    out = values.astype("object").to_numpy(dtype=object, copy=True)
    bad = np.array([not isinstance(v, str) for v in out], dtype=bool)
    out[bad] = ""
    return out


def map_unique(values: np.ndarray, fn: Callable[[str], object]) -> np.ndarray:
    """Apply ``fn`` to each distinct value once and map the results back."""
    codes, uniques = pd.factorize(values)
    results = np.empty(len(uniques), dtype=object)
    results[:] = [fn(v) for v in uniques]
    if len(values) == 0:
        return np.empty(0, dtype=object)
    return results[codes]


def name_tokens(text: str) -> list[str]:
    """The tokens of a cleaned name."""
    return clean_text(text).split()


def surname_key(text: str) -> str:
    """The whole surname, spaces removed: Lloyd-Jones, Lloyd Jones and LLOYDJONES agree."""
    return "".join(name_tokens(text))


def surname_parts(text: str) -> tuple[str, ...]:
    """The family-name parts of a surname, without patronymic particles (ap Rhys -> rhys).

    A double-barrelled or hyphenated name gives each part, so a register holding only one of
    them can still agree on that part.
    """
    tokens = [t for t in name_tokens(text) if t not in PARTICLES]
    return tuple(tokens)


def given_key(text: str) -> str:
    """The first given name, cleaned (``Mary-Jane`` -> ``maryjane`` so it stays one name)."""
    return clean_text(text.replace("-", "")).split(" ")[0] if text else ""


def postcode_parts(text: str) -> tuple[str, str, str]:
    """(full, sector, district) of a postcode; ("", "", "") when empty.

    A UK postcode is formatted ``CF10 1AA`` and gives its sector (``CF10 1``) and district
    (``CF10``). Anything else (a Republic of Ireland Eircode, a foreign code, a typo) is kept as
    its upper-case letters and digits so two identical values still agree, with no partial
    levels, instead of being rejected.
    """
    compact = re.sub(r"[^A-Z0-9]", "", fold(text).upper())
    if not compact:
        return "", "", ""
    m = _UK_POSTCODE.match(compact)
    if m is None:
        return compact, "", ""
    outward, inward = m.groups()
    return f"{outward} {inward}", f"{outward} {inward[0]}", outward


def address_parts(text: str) -> tuple[str, str]:
    """(house number, house-and-street line) of a one-line address, normalised.

    The line is the first comma-separated part holding a digit (else the first part), because
    towns and county names that follow differ between sources (the GP record adds the LA's
    name) and would make two different streets of one town look alike. The house number is the
    first token holding a digit (``12``, ``12a``); street types are shortened to one form.
    """
    segments = [seg for seg in text.split(",") if seg.strip()]
    line = next((seg for seg in segments if any(c.isdigit() for c in seg)), segments[0] if segments else "")
    tokens = [_ADDRESS_TOKENS.get(t, t) for t in clean_text(line).split()]
    number = next((t for t in tokens if any(c.isdigit() for c in t)), "")
    return number, " ".join(tokens)


def parse_dates(values: np.ndarray) -> np.ndarray:
    """ISO ``YYYY-MM-DD`` strings as an (n, 3) int array of year, month, day; -1 if unparseable.

    Unparseable values (empty, malformed, impossible like 2019-02-30) count as missing.
    """
    parsed = pd.to_datetime(pd.Series(values, dtype="object"), format="%Y-%m-%d", errors="coerce")
    out = np.full((len(values), 3), -1, dtype=np.int32)
    ok = parsed.notna().to_numpy()
    out[ok, 0] = parsed.dt.year.to_numpy()[ok]
    out[ok, 1] = parsed.dt.month.to_numpy()[ok]
    out[ok, 2] = parsed.dt.day.to_numpy()[ok]
    return out


def sex_codes(values: np.ndarray) -> np.ndarray:
    """``M``/``F`` as 1/2 (also male/female, any case); anything else 0 (unknown)."""
    table = {"m": 1, "male": 1, "f": 2, "female": 2}
    return np.array(map_unique(values, lambda v: table.get(v.strip().lower(), 0)), dtype=np.int8)
