"""Where keys live. One small interface so a production secrets backend can replace the files.

Key material never leaves ``crypto/``: callers ask for operations (seal, open, sign), not keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from cme_pipeline.durable import DIR_MODE, shred_file, write_atomic
from cme_pipeline.errors import KeyUnavailable


class KeyStore(Protocol):
    """Named secret blobs with create-once, read and destroy."""

    def get(self, name: str) -> bytes:
        """Return the secret, or raise ``KeyUnavailable`` if it is absent or destroyed."""
        ...

    def put(self, name: str, secret: bytes) -> None:
        """Store a new secret; refuse to overwrite one that exists."""
        ...

    def exists(self, name: str) -> bool:
        """Whether the secret is present."""
        ...

    def destroy(self, name: str) -> bool:
        """Destroy the secret beyond recovery; True if it existed."""
        ...


class FileKeyStore:
    """The embedded default: one file per key under a directory, mode 0600.

    Destroying a key overwrites the file with random bytes, syncs, then unlinks it and syncs the
    directory, so the key is not left in the file system's free list in readable form on a
    conventional file system. (On copy-on-write or SSD wear levelling nothing software does is
    a guarantee; production deployments should use an HSM or cloud KMS behind this interface.)
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        root.chmod(DIR_MODE)  # whatever the umask or an earlier version left

    def _path(self, name: str) -> Path:
        parts = name.split("/")
        if not name or any(p in ("", ".", "..") or not _safe(p) for p in parts):
            raise ValueError("key names are slash-separated [A-Za-z0-9_.-] parts")
        return self.root.joinpath(*parts)

    def get(self, name: str) -> bytes:
        """Return the secret, or raise ``KeyUnavailable`` if it is absent or destroyed."""
        path = self._path(name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise KeyUnavailable(f"key {name} is not available (never created or destroyed)") from None

    def exists(self, name: str) -> bool:
        """Whether the secret is present."""
        return self._path(name).is_file()

    def put(self, name: str, secret: bytes) -> None:
        """Store a new secret atomically; refuse to overwrite one that exists."""
        try:
            write_atomic(self._path(name), secret, exclusive=True)
        except FileExistsError:
            raise KeyUnavailable(f"key {name} already exists; refusing to overwrite it") from None

    def destroy(self, name: str) -> bool:
        """Overwrite and unlink the key file; True if it existed."""
        return shred_file(self._path(name))


def _safe(part: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "_.-") for c in part)

