"""Where an LA's evidence lives, canonical JSON, and durable writes.

Evidence must survive a crash at any instant: whole files are written to a temporary name,
synced and renamed; ledger lines are appended with one write and synced (``durable``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cme_pipeline.config import Settings
from cme_pipeline.runs import run_key

GENESIS_HASH = "0" * 64


def canonical(obj: Any) -> bytes:
    """The exact bytes that are hashed or signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def ledger_file(settings: Settings, la_code: str) -> Path:
    """The LA's append-only ledger (JSON lines)."""
    return settings.evidence_dir(la_code) / "ledger.jsonl"


def checkpoints_file(settings: Settings, la_code: str) -> Path:
    """The LA's signed checkpoints (JSON lines)."""
    return settings.evidence_dir(la_code) / "checkpoints.jsonl"


def public_key_file(settings: Settings, la_code: str) -> Path:
    """The exported evidence verification key (PEM) of the LA."""
    return settings.evidence_dir(la_code) / "verification_key.pem"


def certificates_dir(settings: Settings, la_code: str) -> Path:
    """The LA's signed deletion certificates, one file per run."""
    return settings.evidence_dir(la_code) / "certificates"


def certificate_file(settings: Settings, la_code: str, run_id: str) -> Path:
    """The certificate of one run."""
    return certificates_dir(settings, la_code) / f"{run_key(run_id)}.json"


def report_file(settings: Settings, la_code: str, run_id: str) -> Path:
    """The DPO report of one run."""
    return settings.reports_dir(la_code) / f"{run_key(run_id)}.html"


@contextlib.contextmanager
def locked(settings: Settings, la_code: str) -> Iterator[None]:
    """Hold the LA's evidence lock: two tasks of the same LA never interleave ledger appends."""
    folder = settings.evidence_dir(la_code)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_lines(path: Path) -> list[bytes]:
    """The non-empty lines of a JSON-lines file (empty list if absent)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    return [line for line in raw.split(b"\n") if line.strip()]


def read_objects(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, in file order; a line that is not one becomes
    ``{"line": n, "unreadable": True}``, so a checker can name it instead of stopping."""
    out: list[dict[str, Any]] = []
    for number, line in enumerate(read_lines(path), start=1):
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        out.append(parsed if isinstance(parsed, dict) else {"line": number, "unreadable": True})
    return out

