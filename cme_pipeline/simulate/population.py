"""The true population of one LA: households, siblings and twins, names, dates and addresses.

This is the partner-side ground truth from which the health extract and the registers are
derived. Everything is vectorised with numpy so that all of Wales takes seconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from cme_pipeline.simulate.geography import Area
from cme_pipeline.simulate.names import (
    GIVEN_NAMES,
    OTHER_SURNAMES,
    POSTCODE_LETTERS,
    STREETS,
    SURNAMES_2020,
    TAIL_MIDDLES,
    TAIL_PREFIXES,
    TAIL_SUFFIXES,
    WELSH_SURNAMES,
    given_name_tail,
)

HOUSEHOLD_SIZES = np.array([1, 2, 3, 4])
HOUSEHOLD_WEIGHTS = np.array([0.45, 0.38, 0.13, 0.04])
# Chosen so that about 3% of children are twins, as in UK births (about 1.5% of maternities).
TWIN_HOUSEHOLD_RATE = 0.05
WELSH_SHARE = 0.725  # 1830s names: the Welsh table's weights are per cent of the population (Jones 14%)
WELSH_2020_SCALE = 0.4  # 2020 names: the Welsh table's names without a 2020 count, scaled from the 1830s
NAME_FREQUENCIES = ("2020", "1830s")
HYPHENATED_RATE = 0.03
HALF_SIBLING_RATE = 0.10
MIDDLE_NAME_RATE = 0.60
FORMER_SURNAME_RATE = 0.02


@dataclass(frozen=True)
class FamilyConfig:
    """What makes children hard to tell apart, beyond register noise (see docs/simulator.md).

    The default reproduces the original simulator's draws (no extra random draws) on the 2020 name
    frequencies; ``names="1830s"`` reproduces it exactly. ``hard()`` is the harder setting the
    matching benchmarks also measure, on the 1830s names. All rates are per household
    (``namesake`` per child).

    Attributes:
        twin_household: households of two or more children whose first two are twins.
        triplet_share: of twin households with three or more children, those with triplets.
        shared_initial: households of two or more whose children's forenames share a first letter.
        spaced_births: households whose children are born a realistic birth interval apart
            (9 months to a few years) instead of independently across the school years.
        namesake: children given an unrelated namesake (same forename, surname and sex, born
            within six months, living in the same street and postcode).
        stale_move: households that moved after the registers were taken (the registers hold
            the old address, the GP record the new one).
        stale_surname: households whose children's surname changed after the registers were
            taken (the registers hold the old surname).
        former_recorded: of those, the share whose GP record keeps the old surname as former.
        names: the name frequencies (``NAME_FREQUENCIES``): ``"2020"``, Welsh surnames as common
            as in 2020 (Jones 5.4%) and thousands of given names (the top one 2.6%, as in ONS
            baby-name counts); ``"1830s"``, the simulator's first tables, Welsh surnames as in
            1813-37 (Jones 14%) and 39 given names of each sex, about 34 times as many namesakes
            (docs/simulator.md, "Names").
    """

    twin_household: float = TWIN_HOUSEHOLD_RATE
    triplet_share: float = 0.0
    shared_initial: float = 0.0
    spaced_births: float = 0.0
    namesake: float = 0.0
    stale_move: float = 0.0
    stale_surname: float = 0.0
    former_recorded: float = 0.5
    names: str = "2020"

    def __post_init__(self) -> None:
        if self.names not in NAME_FREQUENCIES:
            raise ValueError(f"names must be one of {', '.join(NAME_FREQUENCIES)}")

    @staticmethod
    def hard() -> FamilyConfig:
        """The harder setting: rates and their sources are in docs/simulator.md."""
        return FamilyConfig(
            triplet_share=0.02, shared_initial=0.25, spaced_births=1.0, namesake=0.01,
            stale_move=0.04, stale_surname=0.01, names="1830s",
        )


@lru_cache(maxsize=4)
def surname_pool(names: str = "2020") -> tuple[np.ndarray, np.ndarray]:
    """All surnames and their probabilities: Welsh frequencies, common others and a rare tail.

    ``"2020"``: the Welsh names with a 2020 count take it, the rest of the Welsh table its 1830s
    share x ``WELSH_2020_SCALE``; the other names (common ones, then a tail of 9,000) share what is
    left by rank, as 1 / (rank + 10). ``"1830s"``: the Welsh table as it is (72.5% of children) and
    600 others by rank as 1 / rank^0.9.
    """
    welsh = [s for s, _ in WELSH_SURNAMES]
    if names == "1830s":
        welsh_w = np.array([w for _, w in WELSH_SURNAMES])
        welsh_w = welsh_w / welsh_w.sum() * WELSH_SHARE
        others = list(OTHER_SURNAMES) + [p + s.lower() for p in TAIL_PREFIXES for s in TAIL_SUFFIXES]
        other_w = 1.0 / np.arange(1, len(others) + 1) ** 0.9  # Zipf-like: some common, most rare
    else:
        welsh_w = np.array([SURNAMES_2020.get(s, w * WELSH_2020_SCALE) for s, w in WELSH_SURNAMES]) / 100
        tail = [p + m + s.lower() for p in TAIL_PREFIXES for m in TAIL_MIDDLES for s in TAIL_SUFFIXES]
        others = [o for o in dict.fromkeys([*OTHER_SURNAMES, *tail]) if o not in set(welsh)]
        other_w = 1.0 / (np.arange(1, len(others) + 1) + 10.0)
    other_w = other_w / other_w.sum() * (1 - welsh_w.sum())
    return np.array(welsh + others, dtype=object), np.concatenate([welsh_w, other_w])


@lru_cache(maxsize=8)
def given_name_pool(sex: str, names: str = "2020") -> tuple[np.ndarray, np.ndarray]:
    """Given names of one sex and their probabilities (earlier entries more common).

    ``"2020"``: the named table first, then a tail of invented names, by rank as 1 / (rank + 5):
    the top name 2.6% of children, the top 10 16%, the top 100 45% (ONS, England and Wales 2017:
    1.8%, 13%, 41-50%). ``"1830s"``: the named table alone, as 1 / rank^0.3.
    """
    pool = [g for g, s, _ in GIVEN_NAMES if s == sex]
    if names == "1830s":
        w = 1.0 / np.arange(1, len(pool) + 1) ** 0.3
    else:
        pool = list(dict.fromkeys([*pool, *given_name_tail(sex)]))
        w = 1.0 / (np.arange(1, len(pool) + 1) + 5.0)
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
    family: FamilyConfig | None = None,
) -> pd.DataFrame:
    """The true identities of ``n`` GP-registered children of one LA.

    With a ``family`` setting that asks for them, the frame also has ``register_surname``,
    ``register_address_line1``, ``register_town`` and ``register_postcode``: what the registers,
    taken a term before the extract, still hold.

    Args:
        rng: the LA's random generator.
        area: the LA's geography.
        n: number of children.
        dob_window: earliest and latest date of birth (compulsory school age).
        extract_date: the extract's date (registration dates fall before it).
        nhs_numbers: ``n`` distinct NHS numbers for them.
        family: twins, triplets, sibling and namesake structure (default ``FamilyConfig()``).
    """
    family = family or FamilyConfig()
    sizes = rng.choice(HOUSEHOLD_SIZES, size=n, p=HOUSEHOLD_WEIGHTS)  # more than enough
    cut = int(np.searchsorted(np.cumsum(sizes), n)) + 1
    sizes = sizes[:cut]
    sizes[-1] -= int(sizes.sum() - n)
    n_households = sizes.size
    household = np.repeat(np.arange(n_households), sizes)
    position = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)

    names, probs = surname_pool(family.names)
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
    first = np.cumsum(sizes) - sizes  # index of each household's first child
    if family.spaced_births > 0:
        _space_births(rng, dob, sizes, first, family.spaced_births, start, span)
    twin = np.full(n, "", dtype=object)
    twin_hh = (rng.random(n_households) < family.twin_household) & (sizes >= 2)
    a, b = first[twin_hh], first[twin_hh] + 1
    dob[b] = dob[a]
    surname[b] = surname[a]
    labels = np.array([f"T{h}" for h in np.flatnonzero(twin_hh)], dtype=object)
    twin[a] = labels
    twin[b] = labels
    if family.triplet_share > 0:
        triplet = twin_hh & (sizes >= 3) & (rng.random(n_households) < family.triplet_share)
        c = first[triplet] + 2
        dob[c], surname[c] = dob[first[triplet]], surname[first[triplet]]
        twin[c] = twin[first[triplet]]

    sex = np.where(rng.random(n) < 0.5, "F", "M").astype(object)
    sex[rng.random(n) < 0.001] = "U"
    forename = np.empty(n, dtype=object)
    middle = np.full(n, "", dtype=object)
    for s in ("F", "M", "U"):
        idx = np.flatnonzero(sex == s)
        pool, p = given_name_pool("F" if s == "U" else s, family.names)
        forename[idx] = rng.choice(pool, idx.size, p=p)
        has_middle = idx[rng.random(idx.size) < MIDDLE_NAME_RATE]
        middle[has_middle] = rng.choice(pool, has_middle.size, p=p)
    if family.shared_initial > 0:
        _share_initials(rng, forename, sex, sizes, first, family.shared_initial, family.names)
    # Twins never share a forename (and siblings' middle names never equal their forename).
    same = (forename[b] == forename[a]) & (sex[b] == sex[a])
    for i in np.flatnonzero(same):
        pool, p = given_name_pool("F" if sex[b[i]] == "F" else "M", family.names)
        while forename[b[i]] == forename[a[i]]:
            forename[b[i]] = rng.choice(pool, p=p)
    if family.triplet_share > 0:
        for i in np.flatnonzero(twin != ""):  # triplets too: no two of a multiple birth alike
            mates = np.flatnonzero(household == household[i])
            mates = mates[(twin[mates] == twin[i]) & (mates < i)]
            pool, p = given_name_pool("F" if sex[i] == "F" else "M", family.names)
            while forename[i] in set(forename[mates]):
                forename[i] = rng.choice(pool, p=p)
    clash = middle == forename
    middle[clash] = ""

    former = np.full(n, "", dtype=object)
    has_former = rng.random(n) < FORMER_SURNAME_RATE
    former[has_former] = rng.choice(names, int(has_former.sum()), p=probs)

    if family.namesake > 0:
        _namesakes(rng, forename, surname, sex, dob, household, line1, postcode, town, family.namesake, start, span)

    days_registered = (np.datetime64(extract_date) - dob).astype(int)
    registration = dob + (rng.random(n) * days_registered).astype("timedelta64[D]")
    practices = np.array([f"{area.gp_prefix}{i:03d}" for i in range(max(3, n // 1500))], dtype=object)

    stale: dict[str, np.ndarray] = {}
    if family.stale_move > 0 or family.stale_surname > 0:
        stale = _stale_registers(rng, area, family, household, surname, former, probs, names, line1, town, postcode)
        line1, town, postcode = stale.pop("line1"), stale.pop("town"), stale.pop("postcode")
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
            **stale,
        }
    )


def _space_births(
    rng: np.random.Generator, dob: np.ndarray, sizes: np.ndarray, first: np.ndarray, rate: float,
    start: np.datetime64, span: int,
) -> None:
    """Siblings born a birth interval apart: 9 months plus a gamma-distributed wait (median
    about 2.5 years), kept inside the school-age window by stepping the other way."""
    chosen = np.flatnonzero((sizes >= 2) & (rng.random(sizes.size) < rate))
    for h in chosen:
        day = int((dob[first[h]] - start).astype(int))
        for k in range(1, int(sizes[h])):
            gap = int(275 + rng.gamma(2.0, 300.0))
            step = gap if day + gap < span else -gap
            if not 0 <= day + step < span:
                step = int(rng.integers(-day, span - day))
            day += step
            dob[first[h] + k] = start + np.timedelta64(day, "D")


def _share_initials(
    rng: np.random.Generator, forename: np.ndarray, sex: np.ndarray, sizes: np.ndarray, first: np.ndarray,
    rate: float, names: str,
) -> None:
    """Households that give every child a name with the first child's initial (Ella, Elin, Efa)."""
    chosen = np.flatnonzero((sizes >= 2) & (rng.random(sizes.size) < rate))
    for h in chosen:
        initial = str(forename[first[h]])[0]
        for k in range(1, int(sizes[h])):
            i = first[h] + k
            pool, p = given_name_pool("F" if sex[i] == "F" else "M", names)
            keep = np.array([str(g)[0] == initial for g in pool])
            if keep.any():
                forename[i] = rng.choice(pool[keep], p=p[keep] / p[keep].sum())


def _namesakes(
    rng: np.random.Generator, forename: np.ndarray, surname: np.ndarray, sex: np.ndarray, dob: np.ndarray,
    household: np.ndarray, line1: np.ndarray, postcode: np.ndarray, town: np.ndarray, rate: float,
    start: np.datetime64, span: int,
) -> None:
    """Give ``rate`` of children an unrelated namesake: another household's child of the same
    sex takes their forename and surname, a birthday up to six months away, and that household
    moves into the same street and postcode (another house number)."""
    n = len(forename)
    k = int(round(n * rate / 2))
    if k == 0 or n < 4:
        return
    source = rng.choice(n, min(4 * k, n), replace=False)
    target = rng.choice(n, min(4 * k, n), replace=False)
    used: set[int] = set()
    for i, j in zip(source, target, strict=True):
        if len(used) >= 2 * k:
            break
        if household[i] == household[j] or sex[i] != sex[j] or i in used or j in used:
            continue
        used.update((int(i), int(j)))
        forename[j], surname[j] = forename[i], surname[i]
        day = int((dob[i] - start).astype(int)) + int(rng.choice([-1, 1]) * rng.integers(1, 183))
        dob[j] = start + np.timedelta64(min(max(day, 0), span - 1), "D")
        if dob[j] == dob[i]:
            dob[j] = start + np.timedelta64(min(max(day + 1, 0), span - 1), "D")
        street = str(line1[household[i]]).split(" ", 1)[1]
        number = int(rng.integers(1, 240))
        if f"{number} {street}" == line1[household[i]]:
            number += 1
        line1[household[j]] = f"{number} {street}"
        postcode[household[j]], town[household[j]] = postcode[household[i]], town[household[i]]


def _stale_registers(
    rng: np.random.Generator, area: Area, family: FamilyConfig, household: np.ndarray, surname: np.ndarray,
    former: np.ndarray, probs: np.ndarray, names: np.ndarray, line1: np.ndarray, town: np.ndarray,
    postcode: np.ndarray,
) -> dict[str, np.ndarray]:
    """Registers taken a term before the extract: some households have moved since (new
    address on the GP record, old on the registers) and some children's surname has changed
    (new on the GP record, old on the registers; ``former_recorded`` of them keep the old one
    as a former surname). Updates ``surname`` and ``former`` in place; returns the new
    per-household address arrays and the per-child ``register_*`` columns."""
    n_households = len(line1)
    register = {
        "register_surname": surname.copy(),
        "register_address_line1": line1[household].copy(),
        "register_town": town[household].copy(),
        "register_postcode": postcode[household].copy(),
    }
    moved = np.flatnonzero(rng.random(n_households) < family.stale_move)
    new_line1, new_town, new_postcode = line1.copy(), town.copy(), postcode.copy()
    fresh = random_addresses(rng, area, moved.size)
    new_line1[moved], new_town[moved], new_postcode[moved] = fresh
    renamed_hh = rng.random(n_households) < family.stale_surname
    renamed = np.flatnonzero(renamed_hh[household])
    if renamed.size:
        new_names = rng.choice(names, n_households, p=probs)
        surname[renamed] = new_names[household[renamed]]
        keep = renamed[rng.random(renamed.size) < family.former_recorded]
        former[keep] = register["register_surname"][keep]
    return {"line1": new_line1, "town": new_town, "postcode": new_postcode, **register}
