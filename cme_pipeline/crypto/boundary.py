"""The trust boundary between the NHS partner and an LA: hybrid encryption and signed manifests.

A delivery is one file: a header holding the Ed25519-signed manifest, then the plaintext CSV
encrypted with AES-256-GCM under a key agreed by ECDH (P-256) between a fresh ephemeral key and
one of the LA's **one-time receiving keys** (``prekeys``; HKDF-SHA256). The LA destroys that
prekey once the delivery is processed, so no copy of the delivery anywhere (a backup, a transfer
server, the partner's outbox) opens afterwards. P-256 because a PKCS#11 token can hold it and do
the ECDH itself (SoftHSM2 cannot generate X25519 keys). The manifest carries the ciphertext's
SHA-256, so a flipped byte is caught by the signature check before any decryption is attempted,
and the GCM tag and the plaintext SHA-256 catch it again after.

The partner signs with its own key in its own key store; the LA holds only the partner's pinned
public key (``PARTNER_PINNED``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import struct
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cme_pipeline.crypto.keystore import KeyStore, check_peer_point
from cme_pipeline.crypto.prekeys import Prekey, prekey_name, valid_prekey_id
from cme_pipeline.crypto.signing import ensure_signing_key, pin_public_key
from cme_pipeline.errors import DeliveryRejected, IntegrityError, KeyUnavailable

MAGIC = b"CME-DELIVERY/2\n"
DELIVERY_SUFFIX = ".cmedelivery"
PARTNER_SIGNING_KEY = "partner/signing.ed25519"  # in the partner's own key store
PARTNER_PINNED = "pinned/nhs-partner.ed25519"  # the partner's public key, pinned in the LA's store
_HKDF_INFO = b"cme-pipeline delivery v2"


@dataclass(frozen=True)
class Manifest:
    """What the partner signs for each delivery. Holds no personal data."""

    delivery_id: str
    la_code: str
    extract_date: str
    schema_version: str
    row_count: int
    plaintext_sha256: str
    ciphertext_sha256: str
    recipient_key_id: str
    signer_key_id: str
    ephemeral_public_key: str
    nonce: str
    created_at: str

    def canonical(self) -> bytes:
        """The exact bytes that are signed."""
        return _canonical(asdict(self))

    def aad(self) -> bytes:
        """Associated data bound into the GCM tag: every field but the ciphertext's own hash."""
        fields = asdict(self)
        del fields["ciphertext_sha256"]
        return _canonical(fields)


def _canonical(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _raw(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def pin_partner_key(keys: KeyStore, public_raw: bytes) -> str:
    """Pin the NHS partner's public signing key in the LA's key store (once); return its id.

    Raises:
        KeyUnavailable: a different partner key is pinned already (re-pinning is a deliberate,
            manual act: destroy the old pin first).
    """
    return pin_public_key(keys, PARTNER_PINNED, public_raw, "NHS partner signing key")


# -- sealing (partner side) ------------------------------------------------------------------


def seal_delivery(
    partner_keys: KeyStore,
    plaintext: bytes,
    *,
    la_code: str,
    prekey: Prekey,
    extract_date: dt.date,
    schema_version: str,
    row_count: int,
    signing_key: str = PARTNER_SIGNING_KEY,
) -> tuple[Manifest, bytes]:
    """Encrypt an extract to one of an LA's one-time keys and sign its manifest.

    Args:
        partner_keys: the partner's own key store (its signing key).
        plaintext: the extract CSV bytes.
        la_code: the recipient LA.
        prekey: an unused one-time receiving key of the LA, from a bundle it published.
        extract_date: the date the partner made the extract.
        schema_version: the extract's data-contract version.
        row_count: the number of records the partner declares.
        signing_key: key-store name of the signing key (tests pass a rogue one).
    """
    signer_id = ensure_signing_key(partner_keys, signing_key)
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    aes_key = _derive(ephemeral.exchange(ec.ECDH(), check_peer_point(prekey.public)), prekey.prekey_id)
    nonce = secrets.token_bytes(12)
    draft = Manifest(
        delivery_id=f"D{extract_date:%Y%m%d}-{la_code}-{secrets.token_hex(4)}",
        la_code=la_code,
        extract_date=extract_date.isoformat(),
        schema_version=schema_version,
        row_count=row_count,
        plaintext_sha256=hashlib.sha256(plaintext).hexdigest(),
        ciphertext_sha256="",
        recipient_key_id=prekey.prekey_id,
        signer_key_id=signer_id,
        ephemeral_public_key=base64.b64encode(_raw(ephemeral.public_key())).decode(),
        nonce=base64.b64encode(nonce).decode(),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    ciphertext = AESGCM(aes_key).encrypt(nonce, plaintext, draft.aad())
    manifest = Manifest(**{**asdict(draft), "ciphertext_sha256": hashlib.sha256(ciphertext).hexdigest()})
    signature = partner_keys.sign(signing_key, manifest.canonical())
    header = json.dumps(
        {"manifest": asdict(manifest), "signature": base64.b64encode(signature).decode()},
        sort_keys=True,
    ).encode()
    return manifest, MAGIC + struct.pack(">I", len(header)) + header + ciphertext


def _derive(shared: bytes, prekey_id: str) -> bytes:
    # The prekey's id in the HKDF info binds the key to the one-time key it was agreed with.
    info = _HKDF_INFO + b"\x00" + prekey_id.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


# -- opening (LA side) -----------------------------------------------------------------------


def read_manifest(keys: KeyStore, blob: bytes) -> tuple[Manifest, bytes]:
    """Verify a delivery's signature and ciphertext hash; return the manifest and ciphertext.

    Args:
        keys: the LA's key store, holding the partner's trusted public signing key.
        blob: the delivery file's bytes.
    """
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise IntegrityError("delivery file is not in the CME delivery format")
    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    try:
        header = json.loads(blob[start : start + length])
        manifest = Manifest(**header["manifest"])
        signature = base64.b64decode(header["signature"], validate=True)
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: hostile nesting
        raise IntegrityError("delivery header is unreadable or incomplete") from None
    if not keys.exists(PARTNER_PINNED):
        raise KeyUnavailable("the NHS partner's public signing key is not pinned in this LA's key store")
    trusted = Ed25519PublicKey.from_public_bytes(keys.public_key(PARTNER_PINNED))
    try:
        trusted.verify(signature, manifest.canonical())
    except InvalidSignature:
        raise IntegrityError(
            "manifest signature does not verify with the NHS partner's signing key"
        ) from None
    ciphertext = blob[start + length :]
    if hashlib.sha256(ciphertext).hexdigest() != manifest.ciphertext_sha256:
        raise IntegrityError("ciphertext does not match the SHA-256 in the signed manifest")
    return manifest, ciphertext


def open_delivery(keys: KeyStore, blob: bytes, *, la_code: str) -> tuple[Manifest, bytes]:
    """Verify and decrypt a delivery in memory; return its manifest and plaintext CSV bytes.

    Args:
        keys: the LA's key store.
        blob: the delivery file's bytes.
        la_code: the LA opening it; a delivery addressed elsewhere is rejected.
    """
    manifest, ciphertext = read_manifest(keys, blob)
    if manifest.la_code != la_code:
        raise DeliveryRejected(
            f"delivery is addressed to LA {manifest.la_code}, not {la_code}", check="manifest"
        )
    if not valid_prekey_id(manifest.recipient_key_id):
        raise IntegrityError("manifest names no valid one-time receiving key")
    name = prekey_name(la_code, manifest.recipient_key_id)
    if not keys.exists(name):
        raise IntegrityError(
            "delivery was encrypted to a one-time receiving key this LA does not hold "
            "(already used and destroyed, or never published by this LA)"
        )
    try:
        peer = base64.b64decode(manifest.ephemeral_public_key, validate=True)
        aes_key = _derive(keys.agree(name, peer), manifest.recipient_key_id)
        plaintext = AESGCM(aes_key).decrypt(base64.b64decode(manifest.nonce), ciphertext, manifest.aad())
    except (InvalidTag, ValueError):
        raise IntegrityError("delivery does not decrypt with this LA's receiving key") from None
    if hashlib.sha256(plaintext).hexdigest() != manifest.plaintext_sha256:
        raise IntegrityError("decrypted extract does not match the SHA-256 in the signed manifest")
    return manifest, plaintext
