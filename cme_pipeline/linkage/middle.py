"""A second encoding, without the postcode, for the records that have a middle name.

A child who moved alone since another LA's census differs from its record there only in the
postcode, and so does a namesake born the same day: the main encoding cannot tell them apart
(both score between ``DEFAULT_POSSIBLE_THRESHOLD`` and ``DEFAULT_THRESHOLD``). A middle name
can. When a record has one, its LA also encodes forename, middle name (weighted twelve positions
per bigram, as the best of the variants measured), surname, date of birth, sex and the postcode's
area (``CF``, ``NP``: one whole token, which a move within south-east Wales keeps) with no
postcode bigrams and no random bits for a missing postcode. The child who moved agrees with its
old record on all of it; a namesake born the same day rarely shares the middle name too.

Calibrated with ``benchmarks/cross_la_middle.py`` (benchmarks/README.md, "Experiment: a second
encoding with the middle name" and "The second encoding, built in"): linked on its own, from
``DEFAULT_MIDDLE_THRESHOLD`` no child on no register was removed under three secrets each on
three seeds. Without the area token a namesake was removed at every threshold.
The second encoding is made under keys of its own (``crypto.clk.token_hasher(..., "middle")``),
so it shares no bit position with the main one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cme_pipeline.crypto.clk import TokenHasher
from cme_pipeline.linkage.encode import ClkConfig, encode
from cme_pipeline.matching.normalise import as_text, given_key, map_unique

MIDDLE_ENCODING = "middle"  # the name its keys are derived under
MIDDLE_CONFIG = ClkConfig(k_postcode=0, missing_postcode_random=False, k_middle=12, k_area=20)
# Calibrated on simulated truth: the best second-encoding pair of a child on no register scored
# up to 0.90 on seeds 20260901, 20261001 and 20261101 (three secrets each); 0.92 keeps a margin.
DEFAULT_MIDDLE_THRESHOLD = 0.92


@dataclass(frozen=True)
class MiddleEncodings:
    """What one check sends the linkage unit for the second encoding: for the queries with a
    middle name their index among all queries and their encodings; for the register records with
    one, their encodings and their LA's index."""

    query_rows: np.ndarray
    queries: np.ndarray
    targets: np.ndarray
    target_party: np.ndarray


def has_middle(frame: pd.DataFrame) -> np.ndarray:
    """Which records have a middle name (after normalisation: "-" or spaces are none)."""
    return map_unique(as_text(frame.get("middle_names"), len(frame)), given_key) != ""


def encode_middle(frame: pd.DataFrame, hasher: TokenHasher,
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``frame`` with a middle name, and their second encodings.

    Args:
        frame: records with ``forename``, ``middle_names``, ``surname``, ``dob``, ``sex`` and
            ``postcode``.
        hasher: the check's hasher for this encoding (``token_hasher(..., MIDDLE_ENCODING)``).
        rng: randomness for BLIP (default: fresh from the OS).
    """
    rows = np.flatnonzero(has_middle(frame))
    return rows, encode(frame.iloc[rows], hasher, MIDDLE_CONFIG, rng)
