"""Matching engine: decide, for every child on the health extract, whether they are on a register.

Normalise, block on several keys, compare with rapidfuzz, score with a Fellegi-Sunter model
(m by EM, u from random pairs, term-frequency adjusted), assign one-to-one, and band by two
thresholds (DESIGN.md §4). Two guards keep doubtful pairs for a human rather than deciding them:
twins whose forenames disagree, and (``link``) any pair with a rival for either record within a
few bits; ``match_registers`` instead decides by the pair's probability given the one-to-one
assignment (``decide``), which counts a rival only as the swap it implies, and learns from officers'
review decisions which agreement patterns need no review (``learn``). Takes and returns
DataFrames; never touches storage, crypto or Airflow, and never logs a personal value.
"""

from __future__ import annotations

from cme_pipeline.matching.config import LinkConfig
from cme_pipeline.matching.convert import health_to_canonical, register_to_canonical
from cme_pipeline.matching.learn import agreement_patterns
from cme_pipeline.matching.linker import explain, fit_model, link, match_registers
from cme_pipeline.matching.model import LinkModel

__all__ = [
    "LinkConfig",
    "LinkModel",
    "agreement_patterns",
    "explain",
    "fit_model",
    "health_to_canonical",
    "link",
    "match_registers",
    "register_to_canonical",
]
