"""Given-name variants: nicknames and Welsh/English equivalents, as sets of shared roots.

Two given names are variants when they share a root: a name's roots are itself, the formal names
it is a nickname of (the ``nicknames`` package's table, derived from the well-kept
carltonnorthern/nicknames dataset), and its partners in our Welsh table
(``data/welsh_given_names.csv``). So Dave and Dai agree through David, and Siân and Jane directly.

Blocking uses the roots too: a record is filed under each root of its forename, so two variants
always meet in some block. (Connected components of the variant graph would give one key per
name, but ambiguous pet names such as "al" chain hundreds of names into one component.)
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

from nicknames import NickNamer

from cme_pipeline.matching.normalise import fold


@cache
def _welsh_pairs() -> tuple[tuple[str, str], ...]:
    text = resources.files("cme_pipeline.matching").joinpath("data/welsh_given_names.csv")
    with text.open(encoding="utf-8") as handle:
        rows = csv.reader(line for line in handle if not line.startswith("#"))
        next(rows)  # header
        return tuple((fold(a.strip()), fold(b.strip())) for a, b in rows if a and b)


@cache
def _graph() -> dict[str, set[str]]:
    """Every known name and its direct neighbours (nickname of / Welsh partner of)."""
    graph: dict[str, set[str]] = {}

    def link(a: str, b: str) -> None:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set()).add(a)

    for canonical, nicks in NickNamer().nickname_lookup.items():
        for nick in nicks:
            link(fold(canonical), fold(nick))
    for a, b in _welsh_pairs():
        link(a, b)
    return graph


@cache
def roots(name: str) -> frozenset[str]:
    """The name and its direct neighbours: two names are variants if their roots intersect."""
    return frozenset({name} | _graph().get(name, set()))


def are_variants(a: str, b: str) -> bool:
    """Whether two cleaned given names are known variants of each other (or equal)."""
    return bool(a) and bool(b) and not roots(a).isdisjoint(roots(b))
