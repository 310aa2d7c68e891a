"""Helpers for the evidence tests: a run's evidence written the way pipeline/steps.py writes it.

Ids and counts are synthetic; no personal data is involved at any point.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from cme_pipeline import evidence as proof
from cme_pipeline.config import Settings
from cme_pipeline.home import open_home

LA = "W06000015"
BINS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]


@dataclass(frozen=True)
class RunFigures:
    """The figures of one synthetic run."""

    received: int = 1000
    by_register: tuple[tuple[str, int], ...] = (("school_census", 900), ("ehe", 20), ("eotas", 14))
    possible: int = 6
    unmatched: int = 60

    @property
    def matched(self) -> int:
        """Matched to some register."""
        return sum(n for _, n in self.by_register)

    @property
    def retained(self) -> int:
        """Kept: possible and unmatched."""
        return self.possible + self.unmatched


def write_run(
    settings: Settings, run_id: str, la_code: str = LA, figures: RunFigures = RunFigures(), *,
    report: bool = True,
) -> Path:
    """Record a completed run's evidence as steps.py does; return the certificate path."""
    f = figures
    assert f.received == f.matched + f.possible + f.unmatched
    delivery_id = f"D20261002-{la_code}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"
    sha = "ab" * 32
    proof.record(settings, la_code, run_id, "delivery_received",
                 {"delivery_id": delivery_id, "delivery_sha256": sha, "rows": f.received, "extract_date": "2026-10-02"})
    proof.record(settings, la_code, run_id, "delivery_validated",
                 {"suite": "health_extract", "subject": "delivery", "success": True, "rows_checked": f.received})
    proof.record(settings, la_code, run_id, "registers_validated", {"register_rows": {"school_census": 5000}})
    histogram = [f.unmatched, 0, 0, 0, 0, f.possible, 0, 0, 0, 0, f.matched]
    proof.record(settings, la_code, run_id, "matched", {
        "matched": f.matched, "possible": f.possible, "unmatched": f.unmatched,
        "matched_by_register": dict(f.by_register), "score_histogram": histogram, "score_bins": BINS,
        "match_threshold": 0.95, "possible_threshold": 0.5,
        "review_decisions_learned_from": 40, "cleared_by_decisions": 3,
    })
    proof.record(settings, la_code, run_id, "minimised", {
        "received": f.received, "matched": f.matched, "possible": f.possible,
        "unmatched": f.unmatched, "retained": f.retained,
    })
    proof.record(settings, la_code, run_id, "key_destroyed",
                 {"data_key_id": f"dk-{delivery_id}", "destroyed_at": "2026-10-02T10:00:00+00:00"})
    proof.record(settings, la_code, run_id, "retained", {"retained": f.retained, "retention_expiry": "2026-12-31"})
    proof.record(settings, la_code, run_id, "retained_validated",
                 {"suite": "retained", "subject": "retained", "success": True, "rows_checked": f.retained})
    certificate = proof.issue_certificate(settings, open_home(settings).keys, la_code, run_id, certificate_facts(delivery_id, sha, f))
    proof.record(settings, la_code, run_id, "run_completed", {"certificate": certificate.name})
    if report:
        proof.render_report(settings, open_home(settings).keys, la_code, run_id)
    proof.checkpoint(settings, open_home(settings).keys, la_code)
    return certificate


def certificate_facts(delivery_id: str, sha: str, f: RunFigures) -> proof.CertificateFacts:
    """The certificate facts matching ``write_run``'s ledger."""
    return proof.CertificateFacts(
        delivery_id=delivery_id, delivery_sha256=sha, received=f.received,
        matched_by_register=dict(f.by_register), possible=f.possible, unmatched=f.unmatched,
        retained=f.retained, data_key_id=f"dk-{delivery_id}", data_key_destroyed_at="2026-10-02T10:00:00+00:00",
        suites={"health_extract (delivery)": True, "retained (retained)": True, "registers (school_census)": True},
        forensic_self_check="data key destroyed; no plaintext written", retention_expiry="2026-12-31",
    )


@pytest.fixture
def two_runs(settings: Settings) -> Settings:
    """A home with two completed runs of Cardiff's evidence."""
    write_run(settings, "manual__2026-10-02T09:00:00+00:00")
    write_run(settings, "manual__2026-10-09T09:00:00+00:00", figures=RunFigures(received=500, by_register=(
        ("school_census", 450),), possible=10, unmatched=40))
    return settings
