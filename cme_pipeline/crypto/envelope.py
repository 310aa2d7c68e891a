"""Record encryption of the LA store: per-delivery data keys, versioned retained keys, tags.

Every health value the LA holds at rest is sealed with AES-256-GCM under a key derived from one
secret in the key store (``KeyStore.derive``), so destroying that one secret makes a whole
delivery unreadable (crypto-shredding): the ciphertext may linger in database pages, WAL or
backups, but it is noise without the key. On a ``pkcs11:`` store the secret never leaves the
token; what leaves is a derived key, held in memory only while a step runs.

Secret names (all under the LA's prefix):
- ``la/<la>/data/<delivery_id>``  one per delivery (staged rows, and the NHS-number tags of them);
- ``la/<la>/retained/<n>``        retained-data keys, one per rotation version (review packs are
                                  sealed under a key derived from the current version).

NHS-number tags are keyed by the delivery's own secret, so they die with it: a tag under a key
that survives would reverse to the NHS number in minutes (10^9 candidates). Retained rows carry
no tag at all: nothing looks a retained child up by NHS number.

The associated data of each ciphertext binds it to (LA, delivery or "retained" scope, record id),
so a row copied onto another row, delivery or LA fails to decrypt instead of being misread.
Callers get cipher objects that encrypt and decrypt; keys never leave this package.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cme_pipeline.crypto.keystore import KeyStore
from cme_pipeline.errors import CiphertextInvalid, KeyUnavailable

_FORMAT = b"\x01"  # ciphertext layout version: 1 byte version, 12 byte nonce, GCM ciphertext+tag
_NONCE = 12
_PAD = 64  # plaintexts are padded to a multiple of this, so lengths leak less about names
# Contexts of ``KeyStore.derive``: one secret gives independent keys for independent purposes.
RECORD_KEY = b"cme-record-key/1"
TAG_KEY = b"cme-nhs-tag/1"
KEY_ID = b"cme-key-id/1"


def data_key_name(la_code: str, delivery_id: str) -> str:
    """Key-store name of a delivery's data key."""
    return f"la/{la_code}/data/{delivery_id}"


def retained_key_name(la_code: str, version: int) -> str:
    """Key-store name of a retained-data key version."""
    return f"la/{la_code}/retained/{version}"


def ensure_secret(keys: KeyStore, name: str) -> None:
    """Create the secret if absent (idempotent; a concurrent creator's secret is kept)."""
    if not keys.exists(name):
        try:
            keys.create_secret(name)
        except KeyUnavailable:  # created concurrently by another attempt: use theirs
            if not keys.exists(name):
                raise


def key_id(keys: KeyStore, name: str) -> str:
    """A non-secret id of a stored secret: its name and 16 hex digits derived from it.

    Args:
        keys: the key store.
        name: the secret's name.
    """
    return f"{name}#{keys.derive(name, KEY_ID)[:8].hex()}"


@dataclass(frozen=True)
class RecordCipher:
    """Seals and opens the records of one scope (a delivery, or retained rows of one delivery)."""

    la_code: str
    scope: str
    _key: bytes

    def _aad(self, record_id: str) -> bytes:
        return f"cme-record/1\x00{self.la_code}\x00{self.scope}\x00{record_id}".encode()

    def encrypt(self, record_id: str, plaintext: bytes) -> bytes:
        """Seal one record's bytes, bound to its id.

        Args:
            record_id: the record's per-delivery reference (e.g. ``r000001``).
            plaintext: the serialised record.
        """
        padded = plaintext + b" " * (-len(plaintext) % _PAD)
        nonce = secrets.token_bytes(_NONCE)
        return _FORMAT + nonce + AESGCM(self._key).encrypt(nonce, padded, self._aad(record_id))

    def decrypt(self, record_id: str, blob: bytes) -> bytes:
        """Open one record; raise ``CiphertextInvalid`` naming the record id if it does not verify.

        Args:
            record_id: the record's per-delivery reference.
            blob: the sealed bytes from ``encrypt``.
        """
        if len(blob) < 1 + _NONCE + 16 or blob[:1] != _FORMAT:
            raise CiphertextInvalid(f"LA {self.la_code}: record {record_id} ({self.scope}) is not a sealed record")
        try:
            padded = AESGCM(self._key).decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], self._aad(record_id))
        except InvalidTag:
            raise CiphertextInvalid(
                f"LA {self.la_code}: record {record_id} ({self.scope}) was altered, moved or sealed under another key"
            ) from None
        return padded.rstrip(b" ")

    def __repr__(self) -> str:  # never show key bytes, even in a debugger or traceback
        return f"RecordCipher(la_code={self.la_code!r}, scope={self.scope!r})"


# -- per-delivery data keys ---------------------------------------------------------------------


def create_data_key(keys: KeyStore, la_code: str, delivery_id: str) -> str:
    """Create the delivery's data key if absent (idempotent); return its non-secret id.

    Args:
        keys: the key store.
        la_code: the LA's ONS code.
        delivery_id: the delivery's id from its manifest.
    """
    name = data_key_name(la_code, delivery_id)
    ensure_secret(keys, name)
    return key_id(keys, name)


def _derived(keys: KeyStore, name: str, context: bytes, what: str) -> bytes:
    try:
        return keys.derive(name, context)
    except KeyUnavailable:
        raise KeyUnavailable(f"{what} is destroyed or was never created") from None


def data_cipher(keys: KeyStore, la_code: str, delivery_id: str) -> RecordCipher:
    """The cipher of a delivery's staged rows.

    Args:
        keys: the key store.
        la_code: the LA's ONS code.
        delivery_id: the delivery's id.

    Raises:
        KeyUnavailable: the data key was never created or has been destroyed.
    """
    key = _derived(keys, data_key_name(la_code, delivery_id), RECORD_KEY,
                   f"LA {la_code}: the data key of delivery {delivery_id}")
    return RecordCipher(la_code, f"delivery/{delivery_id}", key)


def data_key_exists(keys: KeyStore, la_code: str, delivery_id: str) -> bool:
    """Whether the delivery's data key is still present."""
    return keys.exists(data_key_name(la_code, delivery_id))


def destroy_data_key(keys: KeyStore, la_code: str, delivery_id: str) -> bool:
    """Destroy the delivery's data key beyond recovery (crypto-shredding); True if it existed.

    Args:
        keys: the key store.
        la_code: the LA's ONS code.
        delivery_id: the delivery's id.
    """
    return keys.destroy(data_key_name(la_code, delivery_id))


# -- retained-data keys (versioned for rotation) ------------------------------------------------


def create_retained_key(keys: KeyStore, la_code: str, version: int) -> None:
    """Create retained-key ``version`` if absent (idempotent).

    Args:
        keys: the key store.
        la_code: the LA's ONS code.
        version: the version number, from 1.
    """
    ensure_secret(keys, retained_key_name(la_code, version))


def retained_key_exists(keys: KeyStore, la_code: str, version: int) -> bool:
    """Whether retained-key ``version`` is present."""
    return keys.exists(retained_key_name(la_code, version))


def retained_cipher(keys: KeyStore, la_code: str, version: int, delivery_id: str) -> RecordCipher:
    """The cipher of retained rows that came from one delivery, under one key version.

    The delivery is part of the associated data because record ids repeat across deliveries.

    Args:
        keys: the key store.
        la_code: the LA's ONS code.
        version: the retained-key version the rows are (to be) sealed under.
        delivery_id: the delivery the rows came from.

    Raises:
        KeyUnavailable: that key version is destroyed.
    """
    key = _derived(keys, retained_key_name(la_code, version), RECORD_KEY,
                   f"LA {la_code}: retained key version {version}")
    return RecordCipher(la_code, f"retained/{delivery_id}", key)


def destroy_retained_key(keys: KeyStore, la_code: str, version: int) -> bool:
    """Destroy retained-key ``version``; True if it existed."""
    return keys.destroy(retained_key_name(la_code, version))


# -- NHS-number tags ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NhsTagger:
    """Keyed HMAC-SHA256 of NHS numbers, for equality lookups without storing the number."""

    _key: bytes

    def tag(self, nhs_number: str) -> str:
        """The hex tag of one NHS number (digits only, spaces ignored)."""
        digits = "".join(c for c in str(nhs_number) if c.isdigit())
        return hmac.new(self._key, digits.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "NhsTagger()"


def nhs_tagger(keys: KeyStore, la_code: str, delivery_id: str) -> NhsTagger:
    """The tagger of one delivery's staged rows: keyed by the delivery's data key, dies with it.

    Raises:
        KeyUnavailable: the data key was never created or has been destroyed.
    """
    return NhsTagger(_derived(keys, data_key_name(la_code, delivery_id), TAG_KEY,
                              f"LA {la_code}: the data key of delivery {delivery_id}"))


# -- review packs -------------------------------------------------------------------------------

REVIEW_PACK_KEY = b"cme-review-pack/1"


def review_cipher(keys: KeyStore, la_code: str, version: int) -> RecordCipher:
    """The cipher of review packs exported while retained-key ``version`` was current.

    Derived from that retained key, so the rotation that follows any deletion of retained rows
    (a confirmed match, a purge) closes every pack exported before it: a pack never outlives
    the children it shows.

    Args:
        keys: the key store.
        la_code: the LA's ONS code.
        version: the retained-key version current at export.

    Raises:
        KeyUnavailable: that version was destroyed by a later rotation.
    """
    key = _derived(keys, retained_key_name(la_code, version), REVIEW_PACK_KEY,
                   f"LA {la_code}: retained key version {version}")
    return RecordCipher(la_code, "review-pack", key)
