"""Where keys live (DESIGN.md §9). Callers ask for operations, never for key bytes.

A key store holds named keys of three kinds and does the secret half of every operation itself,
so a hardware token (``pkcs11_store.Pkcs11KeyStore``) can keep every secret inside it:

- *secrets*: 256-bit keys that only ever give out ``HMAC-SHA256(key, context)``. Every symmetric
  key the pipeline uses (a delivery's data key, a retained-key version, the review and run
  scratch keys, NHS-number tags) is such an output under its own context, so destroying the
  stored secret makes each of them impossible to compute again;
- *signing keys*: Ed25519 key pairs (evidence, prekey bundles, the partner's deliveries);
- *agreement keys*: P-256 ECDH key pairs (the LA's one-time receiving keys).

Public keys of other parties (the NHS partner's, pinned on the LA side) are stored as public
values. ``FileKeyStore`` is the embedded default: one file per key under a directory outside
the home. Only the composition root (``home.py``) chooses and builds a key store.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cme_pipeline.durable import DIR_MODE, create_new_files, shred_file, write_atomic
from cme_pipeline.errors import KeyUnavailable

SECRET_BYTES = 32
P256_POINT_BYTES = 65  # uncompressed X9.62 point: 0x04 || x || y


class KeyStore(Protocol):
    """Named keys; every secret operation happens inside the store."""

    def exists(self, name: str) -> bool:
        """Whether a key (or a public value) of this name is present."""
        ...

    def destroy(self, name: str) -> bool:
        """Destroy the key beyond recovery (both halves of a pair); True if it existed."""
        ...

    def names(self, prefix: str) -> list[str]:
        """Names of the keys under ``prefix``, sorted."""
        ...

    def create_secret(self, name: str) -> None:
        """Create a new 256-bit secret; raise ``KeyUnavailable`` if the name exists."""
        ...

    def create_secrets(self, names: Sequence[str]) -> None:
        """Create several new 256-bit secrets at once; raise ``KeyUnavailable`` (creating none)
        if any name exists."""
        ...

    def derive(self, name: str, context: bytes) -> bytes:
        """``HMAC-SHA256(secret, context)``: 32 bytes of key material for one purpose."""
        ...

    def create_signing_key(self, name: str) -> bytes:
        """Create an Ed25519 key pair; return the raw 32-byte public key."""
        ...

    def sign(self, name: str, payload: bytes) -> bytes:
        """An Ed25519 signature of ``payload`` (64 bytes)."""
        ...

    def create_agreement_key(self, name: str) -> bytes:
        """Create a P-256 key pair for ECDH; return the uncompressed public point (65 bytes)."""
        ...

    def agree(self, name: str, peer_public: bytes) -> bytes:
        """ECDH with a peer's uncompressed P-256 point: the raw 32-byte shared secret."""
        ...

    def put_public(self, name: str, public: bytes) -> None:
        """Pin another party's public key; raise ``KeyUnavailable`` if the name exists."""
        ...

    def public_key(self, name: str) -> bytes:
        """The public half of a key pair, or a pinned public value."""
        ...

    def close(self) -> None:
        """Release the store's resources (a token session); it reopens on next use."""
        ...


def missing(name: str) -> KeyUnavailable:
    """The error every backend raises for an absent or destroyed key."""
    return KeyUnavailable(f"key {name} is not available (never created or destroyed)")


def exists_already(name: str) -> KeyUnavailable:
    """The error every backend raises when asked to create a key that exists."""
    return KeyUnavailable(f"key {name} already exists; refusing to overwrite it")


def check_peer_point(peer_public: bytes) -> ec.EllipticCurvePublicKey:
    """Parse an uncompressed P-256 point, refusing anything off the curve (a one-line error)."""
    if len(peer_public) != P256_POINT_BYTES or peer_public[:1] != b"\x04":
        raise ValueError("peer key is not an uncompressed P-256 point")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer_public)


# Each file starts with one byte saying what it holds, so a key is never used as another kind.
_SECRET, _SIGNING, _AGREEMENT, _PUBLIC = b"S", b"E", b"P", b"U"


class FileKeyStore:
    """The embedded default: one file per key under a directory (0700; files 0600).

    A pair's public half sits beside it as ``<name>.pub``. Destroying a key overwrites its
    files with random bytes, syncs and unlinks them, so the key is not left readable in the file
    system's free list on a conventional file system. On copy-on-write file systems, SSD wear
    levelling or a backed-up directory nothing software does is a guarantee: production
    deployments use ``pkcs11:`` (README, "Key custody").
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        root.chmod(DIR_MODE)  # whatever the umask or an earlier version left

    def __repr__(self) -> str:
        return f"FileKeyStore({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        parts = name.split("/")
        if not name or any(p in ("", ".", "..") or not _safe(p) or p.endswith(".pub") for p in parts):
            raise ValueError("key names are slash-separated [A-Za-z0-9_.-] parts")
        return self.root.joinpath(*parts)

    def _read(self, name: str, kind: bytes, suffix: str = "") -> bytes:
        path = self._path(name)
        try:
            data = (path.with_name(path.name + suffix) if suffix else path).read_bytes()
        except FileNotFoundError:
            raise missing(name) from None
        if data[:1] != kind:
            raise KeyUnavailable(f"key {name} is not a key of the kind this operation needs")
        return data[1:]

    def _create(self, name: str, kind: bytes, secret: bytes, public: bytes | None = None) -> None:
        path = self._path(name)
        if public is not None and path.with_name(path.name + ".pub").exists():
            raise exists_already(name)
        try:
            write_atomic(path, kind + secret, exclusive=True)
        except FileExistsError:
            raise exists_already(name) from None
        if public is not None:
            write_atomic(path.with_name(path.name + ".pub"), _PUBLIC + public)

    def exists(self, name: str) -> bool:
        """Whether a key (or a pinned public value) of this name is present."""
        path = self._path(name)
        return path.is_file() or path.with_name(path.name + ".pub").is_file()

    def destroy(self, name: str) -> bool:
        """Overwrite and unlink the key's files; True if any existed."""
        path = self._path(name)
        private = shred_file(path)
        public = shred_file(path.with_name(path.name + ".pub"))
        return private or public

    def names(self, prefix: str) -> list[str]:
        """Names of the keys under ``prefix`` (a slash-separated folder), sorted."""
        folder = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not folder.is_dir():
            return []
        found = {
            str(p.relative_to(self.root)).removesuffix(".pub")
            for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
        }
        return sorted(found)

    def create_secret(self, name: str) -> None:
        """Create a new random 256-bit secret."""
        import secrets

        self._create(name, _SECRET, secrets.token_bytes(SECRET_BYTES))

    def create_secrets(self, names: Sequence[str]) -> None:
        """Create several new random secrets, made durable by one sync of the file system."""
        import secrets

        paths = [self._path(name) for name in names]
        for name in names:
            if self.exists(name):
                raise exists_already(name)
        try:
            create_new_files([(path, _SECRET + secrets.token_bytes(SECRET_BYTES)) for path in paths])
        except FileExistsError:  # created meanwhile by another process
            raise KeyUnavailable("a key of these names was created meanwhile; refusing to overwrite it") from None

    def derive(self, name: str, context: bytes) -> bytes:
        """``HMAC-SHA256(secret, context)``."""
        return hmac.new(self._read(name, _SECRET), context, hashlib.sha256).digest()

    def create_signing_key(self, name: str) -> bytes:
        """Create an Ed25519 key pair; return the raw public key."""
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._create(name, _SIGNING, private.private_bytes_raw(), public)
        return public

    def sign(self, name: str, payload: bytes) -> bytes:
        """An Ed25519 signature of ``payload``."""
        return Ed25519PrivateKey.from_private_bytes(self._read(name, _SIGNING)).sign(payload)

    def create_agreement_key(self, name: str) -> bytes:
        """Create a P-256 key pair; return the uncompressed public point."""
        private = ec.generate_private_key(ec.SECP256R1())
        public = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        scalar = private.private_numbers().private_value.to_bytes(32, "big")
        self._create(name, _AGREEMENT, scalar, public)
        return public

    def agree(self, name: str, peer_public: bytes) -> bytes:
        """ECDH with a peer's P-256 point: the shared x-coordinate."""
        scalar = int.from_bytes(self._read(name, _AGREEMENT), "big")
        private = ec.derive_private_key(scalar, ec.SECP256R1())
        return private.exchange(ec.ECDH(), check_peer_point(peer_public))

    def put_public(self, name: str, public: bytes) -> None:
        """Pin another party's public key."""
        path = self._path(name)
        if path.is_file():
            raise exists_already(name)
        try:
            write_atomic(path.with_name(path.name + ".pub"), _PUBLIC + public, exclusive=True)
        except FileExistsError:
            raise exists_already(name) from None

    def public_key(self, name: str) -> bytes:
        """The public half of a pair, or a pinned public value."""
        return self._read(name, _PUBLIC, ".pub")

    def close(self) -> None:
        """Nothing to release: every operation opens and closes its own file."""


def _safe(part: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "_.-") for c in part)
