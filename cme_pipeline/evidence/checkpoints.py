"""Signed checkpoints of an LA's ledger: its size and head hash at a moment, signed with Ed25519.

The hash chain alone cannot show that entries were cut off the end, or that the whole chain was
rewritten and rehashed by someone with write access to the file; a signed checkpoint can, as long
as the signing key is kept from that person (a KMS or HSM in production).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cme_pipeline import durable
from cme_pipeline.config import Settings
from cme_pipeline.crypto import KeyStore, signing
from cme_pipeline.evidence import files
from cme_pipeline.evidence.ledger import tip

SIGNED_FIELDS = ("n", "la_code", "size", "head_hash", "time", "key_id")


def signed_payload(checkpoint: dict[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return files.canonical({k: checkpoint.get(k) for k in SIGNED_FIELDS})


def read_checkpoints(settings: Settings, la_code: str) -> list[dict[str, Any]]:
    """The LA's checkpoints in file order; a line that is not JSON becomes ``{"line": n}``.

    Args:
        settings: the home.
        la_code: the LA.
    """
    return files.read_objects(files.checkpoints_file(settings, la_code))


def checkpoint(settings: Settings, keys: KeyStore, la_code: str) -> None:
    """Sign the ledger's current size and head hash; do nothing if the last checkpoint says the same.

    Args:
        settings: the home.
        keys: the key store holding the LA's evidence signing key.
        la_code: the LA whose ledger it is.
    """
    with files.locked(settings, la_code):
        size, head_hash = tip(files.read_lines(files.ledger_file(settings, la_code)))
        existing = read_checkpoints(settings, la_code)
        if existing and existing[-1].get("size") == size and existing[-1].get("head_hash") == head_hash:
            return
        body: dict[str, Any] = {
            "n": len(existing) + 1,
            "la_code": la_code,
            "size": size,
            "head_hash": head_hash,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "key_id": signing.ensure_evidence_key(keys, la_code),
        }
        _, body["signature"] = signing.sign(keys, la_code, signed_payload(body))
        durable.append_line(files.checkpoints_file(settings, la_code), files.canonical(body))
        # The DPO and auditors verify with this copy, without access to the key store.
        pem = files.public_key_file(settings, la_code)
        if not pem.exists():
            durable.write_atomic(pem, signing.public_key_pem(keys, la_code))
        # The NHS partner's witness cosigns every checkpoint: a receipt request goes out now.
        from cme_pipeline.evidence.witness import send_requests

        send_requests(settings, keys, la_code)
