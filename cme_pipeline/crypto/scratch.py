"""Encrypted scratch files for one run: what tasks hand to each other that is not a count.

Between Airflow tasks we pass only ids and counts; anything bigger (the match outcomes, which
carry register record ids) goes to a file sealed with AES-256-GCM under a key that exists only
for the run and is destroyed when the run ends, so the scratch is unreadable afterwards.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cme_pipeline.crypto.envelope import ensure_secret
from cme_pipeline.crypto.keystore import KeyStore
from cme_pipeline.durable import write_atomic
from cme_pipeline.errors import IntegrityError

SCRATCH_KEY = b"cme-scratch/1"


def _key(keys: KeyStore, name: str) -> bytes:
    ensure_secret(keys, name)
    return keys.derive(name, SCRATCH_KEY)


def write_sealed(keys: KeyStore, key_name: str, path: Path, data: bytes) -> None:
    """Encrypt ``data`` under the run key ``key_name`` (created on first use) and write atomically.

    Args:
        keys: the key store.
        key_name: the run's scratch key name.
        path: where the sealed file goes.
        data: the plaintext.
    """
    nonce = secrets.token_bytes(12)
    write_atomic(path, nonce + AESGCM(_key(keys, key_name)).encrypt(nonce, data, path.name.encode()))


def read_sealed(keys: KeyStore, key_name: str, path: Path) -> bytes:
    """Decrypt a sealed scratch file.

    Args:
        keys: the key store.
        key_name: the run's scratch key name.
        path: the sealed file.
    """
    blob = path.read_bytes()
    try:
        return AESGCM(keys.derive(key_name, SCRATCH_KEY)).decrypt(blob[:12], blob[12:], path.name.encode())
    except InvalidTag:
        raise IntegrityError(f"scratch file {path.name} was altered or sealed under another key") from None
