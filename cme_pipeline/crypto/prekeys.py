"""One-time receiving keys ("prekeys"): the LA publishes a signed batch, the partner uses each once.

Each prekey is a P-256 key pair created in the LA's key store; only the public halves leave it,
in a bundle signed with the LA's evidence key. The partner encrypts each delivery to an unused
prekey, and the LA destroys the private half when that delivery's run completes (or its
quarantine period ends). A copy of a delivery kept anywhere is then unreadable for ever, which a
long-term receiving key could never promise.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cme_pipeline.crypto.keystore import KeyStore, check_peer_point
from cme_pipeline.crypto.signing import (
    ensure_evidence_key,
    evidence_key_name,
    key_id_of,
    verify_with_public,
)
from cme_pipeline.errors import IntegrityError

BUNDLE_FORMAT = "cme-prekeys/1"
DEFAULT_BATCH = 8
_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class Prekey:
    """The public half of one one-time receiving key."""

    prekey_id: str
    public: bytes  # uncompressed P-256 point


def prekey_name(la_code: str, prekey_id: str) -> str:
    """Key-store name of one of the LA's prekeys."""
    return f"la/{la_code}/prekeys/{prekey_id}"


def valid_prekey_id(prekey_id: object) -> bool:
    """Whether a manifest's recipient key id has the form of a prekey id."""
    return isinstance(prekey_id, str) and bool(_ID.match(prekey_id))


def held_prekeys(keys: KeyStore, la_code: str) -> list[str]:
    """Ids of the LA's prekeys whose private halves still exist, sorted."""
    prefix = f"la/{la_code}/prekeys/"
    return [name.removeprefix(prefix) for name in keys.names(prefix)]


def destroy_prekey(keys: KeyStore, la_code: str, prekey_id: str) -> bool:
    """Destroy a prekey's private half (``C_DestroyObject`` on a token); True if it existed."""
    return keys.destroy(prekey_name(la_code, prekey_id))


def _signed_part(bundle: dict[str, object]) -> bytes:
    body = {k: v for k, v in bundle.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def publish(keys: KeyStore, la_code: str, count: int = DEFAULT_BATCH) -> bytes:
    """Create ``count`` prekeys in the LA's key store and return the signed bundle for the partner.

    Args:
        keys: the LA's key store.
        la_code: the LA's ONS code.
        count: how many one-time keys (one per future delivery).
    """
    if not 1 <= count <= 1000:
        raise ValueError("a prekey batch holds 1 to 1000 keys")
    ensure_evidence_key(keys, la_code)
    signer = keys.public_key(evidence_key_name(la_code))
    prekeys = []
    for _ in range(count):
        prekey_id = secrets.token_hex(8)
        public = keys.create_agreement_key(prekey_name(la_code, prekey_id))
        prekeys.append({"id": prekey_id, "public": base64.b64encode(public).decode()})
    bundle: dict[str, object] = {
        "format": BUNDLE_FORMAT,
        "la_code": la_code,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "signer_public": base64.b64encode(signer).decode(),
        "signer_key_id": key_id_of(signer),
        "prekeys": prekeys,
    }
    bundle["signature"] = base64.b64encode(keys.sign(evidence_key_name(la_code), _signed_part(bundle))).decode()
    return json.dumps(bundle, indent=1, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True)
class Bundle:
    """A verified prekey bundle: whose it is, the key that signed it, its prekeys."""

    la_code: str
    signer_public: bytes
    prekeys: tuple[Prekey, ...]


def read_bundle(raw: bytes, pinned_signer: Callable[[str], bytes | None]) -> Bundle:
    """Parse and verify a bundle; one clear line on anything wrong, never a key's bytes.

    Args:
        raw: the bundle file's bytes.
        pinned_signer: the public key the partner pinned for the bundle's LA, looked up by LA
            code (None: this first bundle pins it, trust on first use, for the embedded
            simulation only).

    Raises:
        IntegrityError: not a bundle, bad signature, or signed by another key than the pinned one.
    """
    try:
        bundle = json.loads(raw)
        if bundle.get("format") != BUNDLE_FORMAT:
            raise ValueError
        la_code = str(bundle["la_code"])
        signer = base64.b64decode(bundle["signer_public"], validate=True)
        prekeys = tuple(
            Prekey(str(p["id"]), base64.b64decode(p["public"], validate=True)) for p in bundle["prekeys"]
        )
        signature = str(bundle["signature"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError("prekey bundle is not in the cme-prekeys/1 format") from None
    pinned = pinned_signer(la_code)
    if pinned is not None and signer != pinned:
        raise IntegrityError(f"prekey bundle of LA {la_code} is signed by a key other than the pinned one")
    if not verify_with_public(signer, _signed_part(bundle), signature):
        raise IntegrityError(f"prekey bundle of LA {la_code} has an invalid signature")
    for number, prekey in enumerate(prekeys, start=1):
        if not valid_prekey_id(prekey.prekey_id):
            raise IntegrityError(f"prekey bundle of LA {la_code}: prekey {number} has an invalid id")
        try:
            check_peer_point(prekey.public)
        except ValueError:
            raise IntegrityError(f"prekey bundle of LA {la_code}: prekey {number} is not a P-256 key") from None
    return Bundle(la_code, signer, prekeys)
