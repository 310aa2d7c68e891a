"""Children on another Welsh LA's register: schooled across a border, or moved since the census.

A child registered with a GP in LA A may attend a school in a neighbouring LA B (and so be on
B's school census, with their address in A), or may have moved from B to A since B's census
was taken (B's census still holds them, at their old address in B). Either way the child is on
A's health extract, on no register of A, and on a register of B: A's own run leaves them
unmatched, and only the cross-LA check can find them.

Each ordered pair (A, B) of neighbouring LAs simulated together gets its own generator, so A's
simulation (which puts the children on its extract) and B's (which puts them on its census)
draw the same children whatever order the LAs are simulated in, without holding all of Wales in
memory. How many children each LA sends is ``cross_la_rate`` scaled by how many neighbours it has:
an LA with many borders (Powys, Caerphilly, Rhondda Cynon Taf) sends more, Anglesey fewer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from cme_pipeline.areas import LA_CODES
from cme_pipeline.simulate.geography import AREAS
from cme_pipeline.simulate.population import FamilyConfig, random_addresses, simulate_population

CROSS_LA_RATE: Final = 0.03  # base share of an LA's children on a neighbouring LA's register
MOVED_SHARE: Final = 0.35  # of those, moved since the census (the rest are schooled across a border)
_CROSS_STREAM: Final = 16  # its own generator per ordered pair

# Land borders between the principal areas (and the Menai bridges), each pair once.
_BORDERS: Final = (
    ("W06000001", "W06000002"), ("W06000002", "W06000003"), ("W06000002", "W06000004"),
    ("W06000002", "W06000023"), ("W06000002", "W06000008"), ("W06000003", "W06000004"),
    ("W06000004", "W06000005"), ("W06000004", "W06000006"), ("W06000004", "W06000023"),
    ("W06000005", "W06000006"), ("W06000006", "W06000023"), ("W06000008", "W06000023"),
    ("W06000008", "W06000010"), ("W06000008", "W06000009"), ("W06000009", "W06000010"),
    ("W06000010", "W06000023"), ("W06000010", "W06000011"), ("W06000010", "W06000012"),
    ("W06000011", "W06000012"), ("W06000012", "W06000023"), ("W06000012", "W06000013"),
    ("W06000012", "W06000016"), ("W06000013", "W06000016"), ("W06000013", "W06000014"),
    ("W06000014", "W06000016"), ("W06000014", "W06000015"), ("W06000015", "W06000016"),
    ("W06000015", "W06000018"), ("W06000015", "W06000022"), ("W06000016", "W06000018"),
    ("W06000016", "W06000024"), ("W06000016", "W06000023"), ("W06000018", "W06000024"),
    ("W06000018", "W06000023"), ("W06000018", "W06000019"), ("W06000018", "W06000020"),
    ("W06000018", "W06000022"), ("W06000019", "W06000024"), ("W06000019", "W06000023"),
    ("W06000019", "W06000021"), ("W06000019", "W06000020"), ("W06000020", "W06000022"),
    ("W06000020", "W06000021"), ("W06000021", "W06000022"), ("W06000021", "W06000023"),
    ("W06000023", "W06000024"),
)
NEIGHBOURS: Final[dict[str, tuple[str, ...]]] = {
    code: tuple(sorted({b for a, b in _BORDERS if a == code} | {a for a, b in _BORDERS if b == code}))
    for code in LA_CODES
}


def la_rate(la_code: str, base: float) -> float:
    """The share of an LA's children on a neighbour's register: more borders, more of them."""
    return base * min(2.0, 0.5 + 0.25 * len(NEIGHBOURS[la_code]))


def plan(counts: dict[str, int], base: float) -> dict[tuple[str, str], int]:
    """Children of A (first) on B's register (second), for each neighbouring pair simulated together.

    Args:
        counts: children per simulated LA (their extracts' sizes).
        base: ``cross_la_rate``.
    """
    if not 0.0 <= base <= 0.5:
        raise ValueError("cross_la_rate must be between 0 and 0.5")
    out: dict[tuple[str, str], int] = {}
    for a, n in counts.items():
        near = [b for b in NEIGHBOURS[a] if b in counts]
        if not near or base == 0:
            continue
        total = int(round(n * la_rate(a, base) * len(near) / len(NEIGHBOURS[a])))
        share, rest = divmod(total, len(near))
        for i, b in enumerate(near):
            if share + (i < rest):
                out[(a, b)] = share + (i < rest)
    return out


@dataclass(frozen=True)
class PairChildren:
    """Children of LA ``home_la`` who are on LA ``register_la``'s census and no register of their own."""

    home_la: str
    register_la: str
    population: pd.DataFrame  # as ``simulate_population`` returns, addresses in home_la
    moved: np.ndarray  # bool: moved since the census (the census holds an old address in register_la)

    def census_rows(self) -> pd.DataFrame:
        """The children as register_la's census knew them (its own address for those who moved).

        A family moves together: siblings who moved share one old address in register_la, as
        its census holds them.
        """
        rows = self.population.copy()
        idx = np.flatnonzero(self.moved)
        if idx.size:
            line1, town, postcode = self._old_addresses(idx)
            rows.loc[rows.index[idx], "address_line1"] = line1
            rows.loc[rows.index[idx], "town"] = town
            rows.loc[rows.index[idx], "postcode"] = postcode
        return rows

    def previous_postcodes(self) -> np.ndarray:
        """What the NHS partner sends as each child's ``previous_postcode``: the old address's
        postcode in register_la for a child who moved since the census, "" for the others."""
        out = np.full(len(self.population), "", dtype=object)
        idx = np.flatnonzero(self.moved)
        if idx.size:
            out[idx] = self._old_addresses(idx)[2]
        return out

    def _old_addresses(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Address line, town and postcode in register_la of the moved children ``idx``, one
        address per household (drawn from the pair's own generator, so always the same)."""
        rng = np.random.default_rng([*_pair_key(self.home_la, self.register_la), 1])
        codes, households = pd.factorize(self.population["household_id"].to_numpy()[idx])
        line1, town, postcode = random_addresses(rng, AREAS[self.register_la], len(households))
        return line1[codes], town[codes], postcode[codes]


def _pair_key(a: str, b: str) -> tuple[int, int, int]:
    return (LA_CODES.index(a), LA_CODES.index(b), _CROSS_STREAM)


def pair_children(
    seed: int, home_la: str, register_la: str, numbers: list[str], dob_window: tuple[dt.date, dt.date],
    extract_date: dt.date, names: str = "2020",
) -> PairChildren:
    """The children of one ordered pair: the same for both LAs' simulations.

    Args:
        seed: the simulation seed.
        home_la: the LA whose GP extract holds them.
        register_la: the LA whose census holds them.
        numbers: their NHS numbers (one per child).
        dob_window: compulsory school age of the academic year.
        extract_date: the extract's date.
        names: the name frequencies (``FamilyConfig.names``); their families are otherwise
            the default ones.
    """
    rng = np.random.default_rng([seed, *_pair_key(home_la, register_la)])
    pop = simulate_population(rng, AREAS[home_la], len(numbers), dob_window, extract_date, numbers,
                              FamilyConfig(names=names))
    pop["household_id"] = f"{home_la}-X{register_la[-2:]}-H" + pop["household_id"]
    pop["twin"] = np.where(pop["twin"] != "", f"{home_la}-X{register_la[-2:]}-" + pop["twin"], "")
    # Whole households move (a child moves with its family), so siblings are moved or schooled alike.
    codes, households = pd.factorize(pop["household_id"])
    return PairChildren(home_la, register_la, pop, (rng.random(len(households)) < MOVED_SHARE)[codes])
