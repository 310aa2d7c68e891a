"""Privacy-preserving record linkage between LAs: hardened Bloom-filter encodings (``encode``)
made by each LA under the check's shared secret, compared at a linkage unit that holds no
secret (``unit``). Arrays in and out: no storage, no keys (those stay in ``crypto.clk``)."""

from __future__ import annotations

from cme_pipeline.linkage.encode import ClkConfig, encode
from cme_pipeline.linkage.households import household_labels
from cme_pipeline.linkage.middle import (
    DEFAULT_MIDDLE_THRESHOLD,
    MIDDLE_ENCODING,
    MiddleEncodings,
    encode_middle,
)
from cme_pipeline.linkage.previous import PreviousEncodings, encode_previous
from cme_pipeline.linkage.rare import DEFAULT_RARE_THRESHOLD, rare_names
from cme_pipeline.linkage.unit import (
    DEFAULT_HOUSEHOLD_THRESHOLD,
    DEFAULT_POSSIBLE_THRESHOLD,
    DEFAULT_THRESHOLD,
    DEFAULT_UNIQUE_THRESHOLD,
    Found,
    link_encodings,
    run_linkage_unit,
)

__all__ = ["DEFAULT_HOUSEHOLD_THRESHOLD", "DEFAULT_MIDDLE_THRESHOLD", "DEFAULT_POSSIBLE_THRESHOLD",
           "DEFAULT_RARE_THRESHOLD", "DEFAULT_THRESHOLD",
           "DEFAULT_UNIQUE_THRESHOLD", "MIDDLE_ENCODING", "ClkConfig", "Found", "MiddleEncodings", "PreviousEncodings",
           "encode", "encode_middle", "encode_previous", "household_labels", "link_encodings", "rare_names", "run_linkage_unit"]
