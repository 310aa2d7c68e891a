"""Encryption, signatures and keys. Key material never leaves this package."""

from __future__ import annotations

from cme_pipeline.crypto.boundary import (
    DELIVERY_SUFFIX,
    Manifest,
    ensure_la_receiving_key,
    ensure_signing_key,
    open_delivery,
    read_manifest,
    seal_delivery,
)
from cme_pipeline.crypto.envelope import (
    NhsTagger,
    RecordCipher,
    create_data_key,
    data_cipher,
    destroy_data_key,
    nhs_tagger,
    retained_cipher,
)
from cme_pipeline.crypto.keystore import KeyStore

__all__ = [
    "DELIVERY_SUFFIX",
    "KeyStore",
    "Manifest",
    "NhsTagger",
    "RecordCipher",
    "create_data_key",
    "data_cipher",
    "destroy_data_key",
    "ensure_la_receiving_key",
    "ensure_signing_key",
    "nhs_tagger",
    "open_delivery",
    "read_manifest",
    "retained_cipher",
    "seal_delivery",
]
