"""The trust boundary between the NHS partner and an LA: hybrid encryption and signed manifests.

A delivery is one file: a header holding the Ed25519-signed manifest, then the plaintext CSV
encrypted with AES-256-GCM under a key agreed by X25519 between a fresh ephemeral key and the
LA's receiving key (HKDF-SHA256). The manifest carries the ciphertext's SHA-256, so a flipped
byte is caught by the signature check before any decryption is attempted, and the GCM tag and
the plaintext SHA-256 catch it again after.
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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cme_pipeline.crypto.keystore import KeyStore
from cme_pipeline.errors import DeliveryRejected, IntegrityError

MAGIC = b"CME-DELIVERY/1\n"
DELIVERY_SUFFIX = ".cmedelivery"
PARTNER_SIGNING_KEY = "partner/signing.ed25519"
PARTNER_SIGNING_PUBLIC = "partner/signing.ed25519.pub"
_HKDF_INFO = b"cme-pipeline delivery v1"


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


def _key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _raw(public: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- keys -----------------------------------------------------------------------------------


def la_receiving_key_name(la_code: str) -> str:
    """Key-store name of an LA's private receiving key."""
    return f"la/{la_code}/receiving.x25519"


def ensure_la_receiving_key(keys: KeyStore, la_code: str) -> str:
    """Create the LA's X25519 receiving key pair on first use; return its key id.

    Args:
        keys: the key store.
        la_code: the LA's ONS code.
    """
    name = la_receiving_key_name(la_code)
    if not keys.exists(name):
        private = X25519PrivateKey.generate()
        keys.put(name, private.private_bytes_raw())
        keys.put(name + ".pub", _raw(private.public_key()))
    return _key_id(keys.get(name + ".pub"))


def ensure_signing_key(keys: KeyStore, name: str = PARTNER_SIGNING_KEY) -> str:
    """Create an Ed25519 signing key pair on first use; return its key id.

    Args:
        keys: the key store.
        name: key-store name; the partner's trusted key is ``PARTNER_SIGNING_KEY``.
    """
    if not keys.exists(name):
        private = Ed25519PrivateKey.generate()
        keys.put(name, private.private_bytes_raw())
        keys.put(name + ".pub", _raw(private.public_key()))
    return _key_id(keys.get(name + ".pub"))


# -- sealing (partner side) ------------------------------------------------------------------


def seal_delivery(
    keys: KeyStore,
    plaintext: bytes,
    *,
    la_code: str,
    extract_date: dt.date,
    schema_version: str,
    row_count: int,
    signing_key: str = PARTNER_SIGNING_KEY,
) -> tuple[Manifest, bytes]:
    """Encrypt an extract to an LA and sign its manifest; return the manifest and file bytes.

    Args:
        keys: the key store holding the LA's public key and the signing key.
        plaintext: the extract CSV bytes.
        la_code: the recipient LA.
        extract_date: the date the partner made the extract.
        schema_version: the extract's data-contract version.
        row_count: the number of records the partner declares.
        signing_key: key-store name of the signing key (tests pass a rogue one).
    """
    ensure_la_receiving_key(keys, la_code)
    signer_id = ensure_signing_key(keys, signing_key)
    recipient_public = keys.get(la_receiving_key_name(la_code) + ".pub")
    ephemeral = X25519PrivateKey.generate()
    aes_key = _derive(ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public)))
    nonce = secrets.token_bytes(12)
    draft = Manifest(
        delivery_id=f"D{extract_date:%Y%m%d}-{la_code}-{secrets.token_hex(4)}",
        la_code=la_code,
        extract_date=extract_date.isoformat(),
        schema_version=schema_version,
        row_count=row_count,
        plaintext_sha256=hashlib.sha256(plaintext).hexdigest(),
        ciphertext_sha256="",
        recipient_key_id=_key_id(recipient_public),
        signer_key_id=signer_id,
        ephemeral_public_key=base64.b64encode(_raw(ephemeral.public_key())).decode(),
        nonce=base64.b64encode(nonce).decode(),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    ciphertext = AESGCM(aes_key).encrypt(nonce, plaintext, draft.aad())
    manifest = Manifest(**{**asdict(draft), "ciphertext_sha256": hashlib.sha256(ciphertext).hexdigest()})
    signer = Ed25519PrivateKey.from_private_bytes(keys.get(signing_key))
    header = json.dumps(
        {"manifest": asdict(manifest), "signature": base64.b64encode(signer.sign(manifest.canonical())).decode()},
        sort_keys=True,
    ).encode()
    return manifest, MAGIC + struct.pack(">I", len(header)) + header + ciphertext


def _derive(shared: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(shared)


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
    except (ValueError, KeyError, TypeError):
        raise IntegrityError("delivery header is unreadable or incomplete") from None
    trusted = Ed25519PublicKey.from_public_bytes(keys.get(PARTNER_SIGNING_PUBLIC))
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
    name = la_receiving_key_name(la_code)
    our_public = keys.get(name + ".pub")
    if manifest.recipient_key_id != _key_id(our_public):
        raise IntegrityError("delivery was encrypted to a different receiving key of this LA")
    private = X25519PrivateKey.from_private_bytes(keys.get(name))
    try:
        peer = X25519PublicKey.from_public_bytes(base64.b64decode(manifest.ephemeral_public_key))
        aes_key = _derive(private.exchange(peer))
        plaintext = AESGCM(aes_key).decrypt(base64.b64decode(manifest.nonce), ciphertext, manifest.aad())
    except (InvalidTag, ValueError):
        raise IntegrityError("delivery does not decrypt with this LA's receiving key") from None
    if hashlib.sha256(plaintext).hexdigest() != manifest.plaintext_sha256:
        raise IntegrityError("decrypted extract does not match the SHA-256 in the signed manifest")
    return manifest, plaintext
