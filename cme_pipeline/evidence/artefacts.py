"""Evidence files bound into the hash chain, and the LA's verification key pinned outside the home.

Every artefact written beside the ledger (GX validation results, deletion certificates, DPO
reports) gets an ``artefact_written`` ledger entry with its SHA-256, so the signed checkpoints
cover its content: a flipped byte, a deleted, added or swapped file is named by ``verify``. The
exported verification key is bound by the key id every signed checkpoint carries. A pin (a
fingerprint or a key file the DPO keeps outside the home) is what ``verify`` trusts: a home whose
key is missing or different fails, whatever it signed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cme_pipeline.config import Settings
from cme_pipeline.crypto import KeyStore, signing
from cme_pipeline.errors import UsageError
from cme_pipeline.evidence import files, ledger
from cme_pipeline.evidence.checkpoints import read_checkpoints
from cme_pipeline.runs import run_key

EVENT = "artefact_written"
# Files, relative to the LA's area, that must each be bound into the chain (review packs in
# reports/ are the analyst's encrypted working files, not evidence).
BOUND_FILES = (("evidence/validations", "*"), ("evidence/certificates", "*"), ("reports", "*.html"))


def _relative(settings: Settings, la_code: str, path: Path) -> str:
    return path.resolve().relative_to(settings.la_dir(la_code).resolve()).as_posix()


def bind(settings: Settings, la_code: str, run_id: str, path: Path) -> None:
    """Record ``path``'s SHA-256 in the LA's ledger (``artefact_written``), under ``run_id``.

    Args:
        settings: the home.
        la_code: the LA.
        run_id: the run (or analyst action) that wrote the file.
        path: the file, inside the LA's area.
    """
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    ledger.record(settings, la_code, run_id, EVENT, {"file": _relative(settings, la_code, path), "sha256": digest})


def check_artefacts(
    settings: Settings, la_code: str, entries: list[dict[str, Any]], run_id: str | None = None,
) -> list[str]:
    """Problems between the LA's evidence files and their ledger entries (the last per file wins).

    Args:
        settings: the home.
        la_code: the LA.
        entries: the LA's parsed ledger entries.
        run_id: only this run's files (those it recorded, and unrecorded ones named for it).
    """
    recorded: dict[str, tuple[str, Any]] = {}
    others: set[str] = set()
    for entry in entries:
        facts = entry.get("facts") or {}
        if entry.get("event") == EVENT and isinstance(facts, dict):
            if run_id is None or entry.get("run_id") == run_id:
                recorded[str(facts.get("file"))] = (str(facts.get("sha256")), entry.get("seq"))
            else:
                others.add(str(facts.get("file")))
    area = settings.la_dir(la_code)
    problems = []
    for name, (digest, seq) in sorted(recorded.items()):
        path = area / name
        if not path.is_file():
            problems.append(f"{la_code} {name}: missing (ledger entry {seq} recorded it)")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{la_code} {name}: changed since ledger entry {seq} recorded it (edited)")
    for folder, pattern in BOUND_FILES:
        root = area / folder
        for path in sorted(root.rglob(pattern)) if root.is_dir() else []:
            name = path.relative_to(area).as_posix()
            if run_id is not None and (name in others or run_key(run_id) not in name):
                continue
            if path.is_file() and name not in recorded and not path.name.startswith("."):
                problems.append(f"{la_code} {name}: not recorded in the ledger (added or replaced)")
    return problems


def fingerprint(public_raw: bytes) -> str:
    """A verification key's fingerprint: SHA-256 of its raw 32 bytes, in hex (what a DPO pins)."""
    return hashlib.sha256(public_raw).hexdigest()


def pem_fingerprint(pem: bytes) -> str | None:
    """The fingerprint of an Ed25519 public key in PEM, or None if it is not one."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        return None
    if not isinstance(key, Ed25519PublicKey):
        return None
    return fingerprint(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def read_pin(value: str) -> str:
    """A pin as given (a 64-digit hex fingerprint, or a PEM key file's path) -> the fingerprint.

    Raises:
        UsageError: neither a fingerprint nor a readable Ed25519 PEM file.
    """
    text = value.strip().lower()
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text
    path = Path(value).expanduser()
    found = pem_fingerprint(path.read_bytes()) if path.is_file() else None
    if found is None:
        raise UsageError("a pinned verification key must be a 64-digit SHA-256 fingerprint or an Ed25519 PEM file")
    return found


def check_key(settings: Settings, keys: KeyStore, la_code: str, pin: str | None) -> list[str]:
    """The exported verification key is there and is the one the checkpoints name; and, with a pin,
    both it and the key store's key are the pinned key.

    Args:
        settings: the home.
        keys: the key store (which verifies the signatures).
        la_code: the LA.
        pin: the pinned fingerprint, or None.
    """
    problems = []
    pem = files.public_key_file(settings, la_code)
    exported = pem_fingerprint(pem.read_bytes()) if pem.is_file() else None
    checkpoints = [c for c in read_checkpoints(settings, la_code) if not c.get("unreadable")]
    if checkpoints and not pem.is_file():
        problems.append(f"{la_code} {pem.name}: missing (the DPO's copy of the verification key)")
    elif pem.is_file() and exported is None:
        problems.append(f"{la_code} {pem.name}: not an Ed25519 public key (edited)")
    named = {str(c.get("key_id")) for c in checkpoints}
    if exported is not None and checkpoints and not named <= {exported[:16]}:
        problems.append(f"{la_code} {pem.name}: not the key the signed checkpoints name (replaced)")
    if pin is not None:
        if signing.public_key_id(keys, la_code) is None or fingerprint(
                keys.public_key(signing.evidence_key_name(la_code))) != pin:
            problems.append(f"{la_code}: the evidence signing key is not the pinned key (replaced, or the wrong pin)")
        if exported is not None and exported != pin:
            problems.append(f"{la_code} {pem.name}: not the pinned verification key (replaced)")
    return problems
