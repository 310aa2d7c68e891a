"""Ed25519 signatures for the LA's own evidence (ledger checkpoints and deletion certificates).

Each LA has its own evidence signing key, separate from the partner's delivery key, so that an
auditor can verify one LA's evidence with one exported public key. It also signs the LA's
batches of one-time receiving keys (``prekeys``). The private key never leaves the key store:
callers ask for a signature or a check, never for the key.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cme_pipeline.crypto.keystore import KeyStore
from cme_pipeline.errors import KeyUnavailable


def evidence_key_name(la_code: str) -> str:
    """Key-store name of an LA's evidence signing key."""
    return f"la/{la_code}/evidence.ed25519"


def key_id_of(public_raw: bytes) -> str:
    """The id of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def ensure_signing_key(keys: KeyStore, name: str) -> str:
    """Create an Ed25519 signing key pair on first use; return its key id.

    Args:
        keys: the key store.
        name: the key's name.
    """
    if not keys.exists(name):
        try:
            keys.create_signing_key(name)
        except KeyUnavailable:  # created concurrently: use theirs
            if not keys.exists(name):
                raise
    return key_id_of(keys.public_key(name))


def pin_public_key(keys: KeyStore, name: str, public_raw: bytes, what: str) -> str:
    """Pin another party's Ed25519 public key under ``name`` (once); return its key id.

    Args:
        keys: the key store.
        name: where the pin lives.
        public_raw: the raw 32-byte public key.
        what: whose key it is, for the refusal (``NHS partner signing key``).

    Raises:
        KeyUnavailable: a different key is pinned there already (re-pinning is a deliberate,
            manual act: destroy the old pin first).
    """
    if keys.exists(name):
        if keys.public_key(name) != public_raw:
            raise KeyUnavailable(f"a different {what} is pinned already")
    else:
        keys.put_public(name, public_raw)
    return key_id_of(public_raw)


def ensure_evidence_key(keys: KeyStore, la_code: str) -> str:
    """Create the LA's evidence signing key on first use; return its key id.

    Args:
        keys: the key store.
        la_code: the LA's ONS code.
    """
    return ensure_signing_key(keys, evidence_key_name(la_code))


def sign(keys: KeyStore, la_code: str, payload: bytes) -> tuple[str, str]:
    """Sign ``payload`` with the LA's evidence key; return ``(key_id, base64 signature)``.

    Args:
        keys: the key store.
        la_code: the LA whose evidence key signs.
        payload: the exact bytes to sign (canonical JSON).
    """
    key_id = ensure_evidence_key(keys, la_code)
    return key_id, base64.b64encode(keys.sign(evidence_key_name(la_code), payload)).decode()


def public_key_id(keys: KeyStore, la_code: str) -> str | None:
    """The key id of the LA's evidence key, or None if it was never created.

    Args:
        keys: the key store.
        la_code: the LA.
    """
    name = evidence_key_name(la_code)
    if not keys.exists(name):
        return None
    return key_id_of(keys.public_key(name))


def verify(keys: KeyStore, la_code: str, payload: bytes, signature: str) -> bool:
    """True when ``signature`` is the LA's evidence key's signature of ``payload``.

    Args:
        keys: the key store holding the LA's public evidence key.
        la_code: the LA.
        payload: the bytes that were signed.
        signature: base64 signature.
    """
    name = evidence_key_name(la_code)
    if not keys.exists(name):
        return False
    return verify_with_public(keys.public_key(name), payload, signature)


def verify_with_public(public_raw: bytes, payload: bytes, signature: str) -> bool:
    """True when ``signature`` verifies under a raw Ed25519 public key (an auditor's check).

    Args:
        public_raw: the 32-byte public key.
        payload: the bytes that were signed.
        signature: base64 signature.
    """
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(base64.b64decode(signature, validate=True), payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_pem(keys: KeyStore, la_code: str) -> bytes:
    """The LA's evidence verification key as PEM (SubjectPublicKeyInfo), for the DPO and auditors.

    Args:
        keys: the key store.
        la_code: the LA.
    """
    ensure_evidence_key(keys, la_code)
    public = Ed25519PublicKey.from_public_bytes(keys.public_key(evidence_key_name(la_code)))
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def matches_public_pem(keys: KeyStore, la_code: str, pem: bytes) -> bool:
    """True when an exported PEM is the LA's current evidence verification key.

    Args:
        keys: the key store.
        la_code: the LA.
        pem: the exported key's bytes.
    """
    name = evidence_key_name(la_code)
    if not keys.exists(name):
        return False
    try:
        public = serialization.load_pem_public_key(pem)
    except ValueError:
        return False
    return isinstance(public, Ed25519PublicKey) and public.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ) == keys.public_key(name)
