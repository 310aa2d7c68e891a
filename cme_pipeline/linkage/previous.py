"""A second look for a child who moved: its encoding with the postcode it had before.

A child who moved from LA B to LA A since B's census is on A's extract at its new address and on
B's census at its old one, so its encoding agrees with its register record on names, date of
birth and sex but not the postcode: it scores like a namesake born the same day, and the check
can only note it (``DEFAULT_POSSIBLE_THRESHOLD``) unless a middle name, a rare name or its family
tell it apart. The NHS keeps address history: the partner sends ``previous_postcode`` when the
child's current address dates from within twelve months of the extract (``schemas``). The LA
encodes such a child a second time, exactly as its main encoding but with the previous postcode,
and the linkage unit compares that with the same register encodings at the same thresholds: the
child who moved agrees with its old record on everything, as a child schooled across a border
does; a namesake would have to have lived at the same postcode too.

The unit learns which children of each LA have a previous postcode (it is told whose second look
each is, to answer per child), so which moved in the year, and gets two BLIP draws of their names
and date of birth; it learns neither postcode (docs/cross-la.md, attacks and collusion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cme_pipeline.crypto.clk import TokenHasher
from cme_pipeline.linkage.encode import ClkConfig, encode
from cme_pipeline.matching.normalise import as_text, map_unique, postcode_parts
from cme_pipeline.schemas import PREVIOUS_POSTCODE


@dataclass(frozen=True)
class PreviousEncodings:
    """What one check sends the linkage unit for the children with a previous postcode: their
    index among all queries and their encodings with that postcode (compared with the register
    encodings of the main look)."""

    query_rows: np.ndarray
    queries: np.ndarray


def has_previous(frame: pd.DataFrame) -> np.ndarray:
    """Which records have a previous postcode that differs from the current one (a record of a
    delivery under extract schema 2, or a partner's copy of the current postcode, has none)."""
    n = len(frame)

    def key(value: str) -> str:
        return postcode_parts(value)[0].replace(" ", "")

    previous = map_unique(as_text(frame.get(PREVIOUS_POSTCODE), n), key)
    current = map_unique(as_text(frame.get("postcode"), n), key)
    return (previous != "") & (previous != current)


def encode_previous(frame: pd.DataFrame, hasher: TokenHasher, config: ClkConfig | None = None,
                    rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``frame`` with a previous postcode, and their encodings with it.

    Args:
        frame: records with ``forename``, ``middle_names``, ``surname``, ``dob``, ``sex``,
            ``postcode`` and ``previous_postcode``.
        hasher: the check's hasher of the main encoding (the register records are compared as
            they are).
        config: the main encoding's configuration.
        rng: randomness for BLIP (default: fresh from the OS).
    """
    rows = np.flatnonzero(has_previous(frame))
    moved = frame.iloc[rows].copy()
    moved["postcode"] = as_text(frame.get(PREVIOUS_POSTCODE), len(frame))[rows]
    return rows, encode(moved, hasher, config, rng)
