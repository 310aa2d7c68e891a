"""Great Expectations gates: each step proves it holds only what it may, and that it is sound.

Suites live in ``expectations/`` (JSON a DPO can read), one per checkpoint. They run from our own
code with an ephemeral context and a result format that carries counts and row numbers, never a
value (DESIGN.md §5). Importing this package does not import Great Expectations.
"""

from __future__ import annotations

from cme_pipeline.quality.delivery import check_delivery, validate_delivery
from cme_pipeline.quality.evidence import write_results
from cme_pipeline.quality.extract_csv import MAX_FIELD_CHARS, parse_extract
from cme_pipeline.quality.gates import (
    check_register,
    validate_match_output,
    validate_post_deletion,
    validate_registers,
    validate_retained,
)
from cme_pipeline.quality.results import (
    DeliveryInvalid,
    ExpectationOutcome,
    QualityGateFailed,
    SuiteOutcome,
    facts,
)
from cme_pipeline.quality.runner import warm_up

__all__ = [
    "MAX_FIELD_CHARS",
    "DeliveryInvalid",
    "ExpectationOutcome",
    "QualityGateFailed",
    "SuiteOutcome",
    "check_delivery",
    "facts",
    "parse_extract",
    "validate_delivery",
    "validate_match_output",
    "validate_post_deletion",
    "check_register",
    "validate_registers",
    "validate_retained",
    "warm_up",
    "write_results",
]
