"""Signed deletion certificates: one per run and LA, stating what arrived, was deleted and kept.

The certificate repeats figures that are also in the ledger, bound to the ledger's head at the
moment it was issued, so ``verify`` can tell a certificate that was edited or swapped for
another run's from one that is genuine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cme_pipeline import durable
from cme_pipeline.config import Settings
from cme_pipeline.crypto import KeyStore, signing
from cme_pipeline.errors import CmeError
from cme_pipeline.evidence import files
from cme_pipeline.evidence.ledger import check_facts, tip

FORMAT = "cme-deletion-certificate/1"


@dataclass(frozen=True)
class CertificateFacts:
    """What a deletion certificate states: ids, counts, key ids, dates, suite outcomes."""

    delivery_id: str
    delivery_sha256: str
    received: int
    matched_by_register: dict[str, int]
    possible: int
    unmatched: int
    retained: int
    data_key_id: str
    data_key_destroyed_at: str
    suites: dict[str, bool]
    forensic_self_check: str
    retention_expiry: str

    @property
    def matched(self) -> int:
        """Children matched to at least one register (and so deleted)."""
        return self.received - self.possible - self.unmatched


def signed_payload(certificate: dict[str, Any]) -> bytes:
    """The bytes a certificate's signature covers: everything but the signature."""
    return files.canonical({k: v for k, v in certificate.items() if k != "signature"})


def read_certificate(path: Path) -> dict[str, Any]:
    """A certificate file's JSON (not verified).

    Args:
        path: the certificate file.

    Raises:
        CmeError: the file is not a JSON object.
    """
    try:
        body = json.loads(path.read_bytes())
    except ValueError:
        raise CmeError(f"certificate {path.name}: not valid JSON") from None
    if not isinstance(body, dict):
        raise CmeError(f"certificate {path.name}: not a JSON object")
    return body


def issue_certificate(settings: Settings, keys: KeyStore, la_code: str, run_id: str, facts: CertificateFacts) -> Path:
    """Write the run's signed deletion certificate; return its path.

    Idempotent: if the run already has a certificate stating the same facts, it is returned
    unchanged. A certificate is never rewritten with different facts.

    Args:
        settings: the home.
        keys: the key store holding the LA's evidence signing key.
        la_code: the LA.
        run_id: the Airflow run id.
        facts: what the certificate states.

    Raises:
        CmeError: the run already has a certificate that states different facts.
    """
    stated = json.loads(files.canonical(dataclasses.asdict(facts)))
    check_facts(stated, "certificate")
    path = files.certificate_file(settings, la_code, run_id)
    with files.locked(settings, la_code):
        if path.exists():
            existing = read_certificate(path)
            if existing.get("facts") != stated or existing.get("run_id") != run_id:
                raise CmeError(f"{la_code} run {run_id}: a certificate with different figures exists; not replacing it")
        else:
            _write(settings, keys, la_code, run_id, stated, facts.matched, path)
    return _bound(settings, la_code, run_id, path)


def _write(
    settings: Settings, keys: KeyStore, la_code: str, run_id: str, stated: dict[str, Any], matched: int, path: Path,
) -> None:
    """Sign and write a new certificate against the ledger's current head (the caller holds the lock)."""
    size, head_hash = tip(files.read_lines(files.ledger_file(settings, la_code)))
    body: dict[str, Any] = {
        "format": FORMAT,
        "la_code": la_code,
        "run_id": run_id,
        "issued_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "facts": stated,
        "matched": matched,
        "ledger_size": size,
        "ledger_head_hash": head_hash,
        "key_id": signing.ensure_evidence_key(keys, la_code),
    }
    _, body["signature"] = signing.sign(keys, la_code, signed_payload(body))
    durable.write_atomic(path, json.dumps(body, indent=1, sort_keys=True).encode() + b"\n")


def _bound(settings: Settings, la_code: str, run_id: str, path: Path) -> Path:
    # Outside the ledger lock, which recording takes itself; idempotent for a retried task.
    from cme_pipeline.evidence.artefacts import bind

    bind(settings, la_code, run_id, path)
    return path
