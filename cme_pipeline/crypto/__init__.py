"""Encryption, signatures and keys. Key material never leaves this package (or the token)."""

from __future__ import annotations

from cme_pipeline.crypto.boundary import (
    DELIVERY_SUFFIX,
    PARTNER_PINNED,
    PARTNER_SIGNING_KEY,
    Manifest,
    open_delivery,
    pin_partner_key,
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
from cme_pipeline.crypto.prekeys import Prekey, destroy_prekey, held_prekeys, prekey_name

__all__ = [
    "DELIVERY_SUFFIX",
    "PARTNER_PINNED",
    "PARTNER_SIGNING_KEY",
    "KeyStore",
    "Manifest",
    "NhsTagger",
    "Prekey",
    "RecordCipher",
    "create_data_key",
    "data_cipher",
    "destroy_data_key",
    "destroy_prekey",
    "held_prekeys",
    "nhs_tagger",
    "open_delivery",
    "pin_partner_key",
    "prekey_name",
    "read_manifest",
    "retained_cipher",
    "seal_delivery",
]
