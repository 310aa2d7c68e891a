"""Apply register-side noise to person records, recording which kinds were applied."""

from __future__ import annotations

import datetime as dt
import unicodedata

import numpy as np
import pandas as pd

from cme_pipeline.simulate.geography import Area
from cme_pipeline.simulate.names import GIVEN_NAMES, OTHER_SURNAMES
from cme_pipeline.simulate.noise import NoiseConfig
from cme_pipeline.simulate.population import random_addresses

VARIANTS: dict[str, tuple[str, ...]] = {g: v for g, _, v in GIVEN_NAMES if v}
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def typo(value: str, rng: np.random.Generator) -> str:
    """One keying error: a substituted, dropped, doubled or transposed letter."""
    if len(value) < 3:
        return value
    i = int(rng.integers(1, len(value) - 1))  # keep the first letter, as most typos do
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return value[:i] + _LETTERS[int(rng.integers(0, 26))] + value[i + 1 :]
    if kind == 1:
        return value[:i] + value[i + 1 :]
    if kind == 2:
        return value[:i] + value[i] + value[i:]
    return value[: i - 1] + value[i] + value[i - 1] + value[i + 1 :]


def fold(value: str) -> str:
    """Drop diacritics (Siân -> Sian), as many register systems do."""
    return "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))


def _shift_day(iso: str, rng: np.random.Generator) -> str:
    d = dt.date.fromisoformat(iso)
    step = 1 if rng.random() < 0.5 else -1
    moved = d + dt.timedelta(days=step)
    if moved.month != d.month:
        moved = d - dt.timedelta(days=step)
    return moved.isoformat()


def _transpose(iso: str) -> str | None:
    d = dt.date.fromisoformat(iso)
    if d.day > 12 or d.day == d.month:
        return None
    return dt.date(d.year, d.day, d.month).isoformat()


def distort(
    frame: pd.DataFrame, rng: np.random.Generator, noise: NoiseConfig, area: Area
) -> tuple[pd.DataFrame, np.ndarray]:
    """Return a noisy copy of register person records and the noise labels of each record.

    Args:
        frame: records with forename, middle_names, surname, dob, sex, address, postcode.
        rng: the random generator.
        noise: the rates.
        area: the LA (new addresses after a house move stay inside it).
    """
    out = frame.reset_index(drop=True)
    n = len(out)
    labels: list[list[str]] = [[] for _ in range(n)]

    def pick(rate: float, eligible: np.ndarray | None = None) -> np.ndarray:
        hit = rng.random(n) < rate
        if eligible is not None:
            hit &= eligible
        return np.flatnonzero(hit)

    def mark(rows: np.ndarray, kind: str) -> None:
        for r in rows:
            labels[r].append(kind)

    def assign(column: str, rows: np.ndarray, values: object) -> None:
        column_values = out[column].to_numpy(dtype=object).copy()
        column_values[rows] = values
        out[column] = column_values

    fore = out["forename"].to_numpy(dtype=object).copy()
    middle = out["middle_names"].to_numpy(dtype=object).copy()
    sur = out["surname"].to_numpy(dtype=object).copy()
    dob = out["dob"].to_numpy(dtype=object).copy()

    has_variant = np.array([f in VARIANTS for f in fore], dtype=bool)
    rows = pick(noise.forename_variant, has_variant)
    for r in rows:
        options = VARIANTS[fore[r]]
        fore[r] = options[int(rng.integers(0, len(options)))]
    mark(rows, "forename_variant")

    rows = pick(noise.name_swap, middle != "")
    fore[rows], middle[rows] = middle[rows].copy(), fore[rows].copy()
    mark(rows, "name_swap")

    rows = pick(noise.forename_typo)
    fore[rows] = [typo(v, rng) for v in fore[rows]]
    mark(rows, "forename_typo")

    rows = pick(noise.surname_change)
    pool = np.array(OTHER_SURNAMES, dtype=object)
    for r in rows:
        parts = sur[r].split("-")
        sur[r] = parts[int(rng.integers(0, len(parts)))] if len(parts) > 1 else rng.choice(pool)
    mark(rows, "surname_change")

    rows = pick(noise.surname_typo)
    sur[rows] = [typo(v, rng) for v in sur[rows]]
    mark(rows, "surname_typo")

    transposed = np.array([_transpose(v) for v in dob], dtype=object)
    rows = pick(noise.dob_transposed, np.array([t is not None for t in transposed], dtype=bool))
    dob[rows] = transposed[rows]
    mark(rows, "dob_transposed")

    rows = pick(noise.dob_digit_slip)
    dob[rows] = [_shift_day(v, rng) for v in dob[rows]]
    mark(rows, "dob_digit_slip")

    accented = np.array(
        [fold(f + m + s) != f + m + s for f, m, s in zip(fore, middle, sur, strict=True)], dtype=bool
    )
    rows = pick(noise.ascii_fold, accented)
    for col in (fore, middle, sur):
        col[rows] = [fold(v) for v in col[rows]]
    mark(rows, "ascii_fold")

    out["forename"], out["middle_names"], out["surname"], out["dob"] = fore, middle, sur, dob

    rows = pick(noise.moved_house)
    line1, town, postcode = random_addresses(rng, area, rows.size)
    assign("address", rows, line1 + ", " + town)
    assign("postcode", rows, postcode)
    mark(rows, "moved_house")

    for column, kind, rate in (
        ("postcode", "missing_postcode", noise.missing_postcode),
        ("middle_names", "missing_middle_names", noise.missing_middle_names),
        ("sex", "missing_sex", noise.missing_sex),
        ("address", "missing_address", noise.missing_address),
    ):
        rows = pick(rate, out[column].to_numpy() != "")
        assign(column, rows, "")
        mark(rows, kind)

    rows = pick(noise.upper_case)
    for column in ("forename", "middle_names", "surname", "address", "postcode"):
        assign(column, rows, [v.upper() for v in out[column].to_numpy(dtype=object)[rows]])
    mark(rows, "upper_case")

    return out, np.array([";".join(x) for x in labels], dtype=object)
