"""Evidence a DPO and an auditor can verify without trusting the operator (DESIGN.md §1 step 7).

An append-only hash-chained ledger per LA, signed checkpoints of it, a signed deletion
certificate per run, a plain-English HTML report, and ``verify`` that checks all of it against
each other and against Airflow's own run history. Nothing here holds personal data.
"""

from __future__ import annotations

from cme_pipeline.evidence.certificate import CertificateFacts, issue_certificate
from cme_pipeline.evidence.checkpoints import checkpoint
from cme_pipeline.evidence.ledger import (
    CROSS_LA_RUN_PREFIX,
    EVENTS,
    FOLLOW_UP_RUN_PREFIX,
    REGISTERS_RUN_PREFIX,
    REVIEW_RUN_PREFIX,
    TRANSFER_RUN_PREFIX,
    EvidenceRefused,
    record,
)
from cme_pipeline.evidence.report import render_report
from cme_pipeline.evidence.verify import VerifyReport, verify

__all__ = [
    "EVENTS",
    "CertificateFacts",
    "CROSS_LA_RUN_PREFIX",
    "TRANSFER_RUN_PREFIX",
    "FOLLOW_UP_RUN_PREFIX",
    "REGISTERS_RUN_PREFIX",
    "REVIEW_RUN_PREFIX",
    "EvidenceRefused",
    "VerifyReport",
    "checkpoint",
    "issue_certificate",
    "record",
    "render_report",
    "verify",
]
