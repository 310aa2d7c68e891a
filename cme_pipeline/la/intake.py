"""The LA side of a delivery: open, parse, validate; quarantine on any failure.

``open_delivery_file`` verifies and decrypts a delivery in memory, parses it strictly and runs
the delivery suite. If anything fails, the delivery file moves, still encrypted and byte for
byte unchanged, to the LA's ``quarantine/`` (an atomic rename; the file is never lost), a
PII-free note of why is written beside it, and ``DeliveryQuarantined`` is raised. Nothing of the
plaintext is written anywhere by this module.

``expire_quarantine`` ends a quarantine after ``Settings.quarantine_days``: the delivery's
one-time receiving key is destroyed (if the signed manifest named one of ours) and the file and
its note are shredded, so the rejected extract cannot be opened anywhere any more.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cme_pipeline.crypto import Manifest, destroy_prekey, open_delivery, read_manifest
from cme_pipeline.crypto.boundary import DELIVERY_SUFFIX
from cme_pipeline.crypto.prekeys import valid_prekey_id
from cme_pipeline.durable import move, shred_file, write_atomic
from cme_pipeline.errors import CmeError, DeliveryRejected
from cme_pipeline.evidence.ledger import processed_deliveries
from cme_pipeline.home import Home
from cme_pipeline.quality.delivery import validate_delivery
from cme_pipeline.quality.extract_csv import parse_extract
from cme_pipeline.quality.results import SuiteOutcome
from cme_pipeline.schemas import EXTRACT_SCHEMAS

REJECTION_SUFFIX = ".rejection.json"


@dataclass(frozen=True)
class IntakeResult:
    """A delivery that passed every check: its manifest, the extract (in memory), the verdict."""

    manifest: Manifest
    extract: pd.DataFrame  # HEALTH_EXTRACT columns, str values, "" for missing
    validation: SuiteOutcome


class DeliveryQuarantined(DeliveryRejected):
    """A delivery failed a check and now sits, still encrypted, in the LA's quarantine.

    ``details`` is PII-free (check and expectation names, counts) for the evidence ledger.
    """

    def __init__(self, message: str, *, reason: str, check: str, details: dict[str, Any], quarantined: Path) -> None:
        super().__init__(message, check=check)
        self.reason = reason  # without the "delivery … rejected" preamble, for summaries
        self.details = details
        self.quarantined = quarantined


def open_delivery_file(home: Home, la_code: str, path: Path, year_start: int) -> IntakeResult:
    """Open one delivery from the LA's inbox; quarantine it and raise if any check fails.

    Args:
        home: the LA's services (keys).
        la_code: the LA opening it (a delivery addressed to another LA is rejected).
        path: the ``.cmedelivery`` file.
        year_start: the run's academic year (its compulsory-school-age window).

    Raises:
        DeliveryQuarantined: the delivery failed a check and was moved to quarantine.
        KeyUnavailable: the LA's own keys are missing (a set-up fault, not the delivery's: the
            delivery stays in the inbox).
    """
    try:
        blob = _read_entry(home, path)
    except DeliveryRejected as exc:  # an entry nobody can process must not block the LA for ever
        raise _quarantine(home, la_code, path, b"", exc.reason, exc.check, None) from None
    try:
        return _check(home, la_code, blob, year_start, path.name)
    except DeliveryRejected as exc:
        raise _quarantine(home, la_code, path, blob, exc.reason, exc.check, getattr(exc, "details", None)) from None
    except CmeError:
        raise
    except Exception as exc:  # noqa: BLE001 - a crash in the checks must still quarantine
        # The exception's own message may quote a value: keep only its type.
        reason = f"checks could not complete ({type(exc).__name__})"
        raise _quarantine(home, la_code, path, blob, reason, "internal", None) from None


def _read_entry(home: Home, path: Path) -> bytes:
    """The bytes of an inbox entry that is a regular file within the size limit."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise DeliveryRejected("inbox entry is not a regular file", check="inbox")
        if info.st_size > home.settings.max_delivery_bytes:
            raise DeliveryRejected(
                f"delivery is larger than the limit of {home.settings.max_delivery_bytes} bytes", check="inbox"
            )
        with open(path, "rb") as fh:
            return fh.read(home.settings.max_delivery_bytes + 1)
    except OSError as exc:
        raise DeliveryRejected(f"delivery cannot be read ({exc.strerror})", check="inbox") from None


def _check(home: Home, la_code: str, blob: bytes, year_start: int, file_name: str) -> IntakeResult:
    manifest, plaintext = open_delivery(home.keys, blob, la_code=la_code)
    columns = EXTRACT_SCHEMAS.get(manifest.schema_version)
    if columns is None:
        # Schema 1 included: it cannot mark restricted children, whose address must not arrive.
        raise DeliveryRejected(
            f"manifest schema version is not {' or '.join(EXTRACT_SCHEMAS)}", check="manifest"
        )
    try:
        extract_date = dt.date.fromisoformat(manifest.extract_date)
    except ValueError:
        raise DeliveryRejected("manifest extract date is not a date", check="manifest") from None
    _refuse_replay(home, la_code, manifest)
    if f"{manifest.delivery_id}{DELIVERY_SUFFIX}" != file_name:
        # The name is the partner's, the id is signed: a renamed file is not what was sent.
        raise DeliveryRejected("file name does not match the signed delivery id", check="manifest")
    extract = parse_extract(plaintext, columns)
    del plaintext
    outcome = validate_delivery(
        extract,
        manifest_rows=manifest.row_count,
        year_start=year_start,
        extract_date=extract_date,
        subject="the extract",
    )
    return IntakeResult(manifest=manifest, extract=extract, validation=outcome)


def _refuse_replay(home: Home, la_code: str, manifest: Manifest) -> None:
    """A delivery processed before, or an extract not newer than the last processed, is refused:
    running it again would rebuild a retained list, restart its retention clock and bring back
    children deleted since (on review, or as matched)."""
    processed = processed_deliveries(home.settings, la_code)
    if manifest.delivery_id in processed:
        raise DeliveryRejected("delivery was already processed (a replay); nothing is run again", check="replay")
    latest = max(processed.values(), default="")
    if latest and manifest.extract_date <= latest:
        raise DeliveryRejected(
            f"extract of {manifest.extract_date} is not after the last processed extract of this LA "
            f"({latest}): an older extract sent again is not run", check="replay",
        )


def _signed_recipient(home: Home, blob: bytes) -> str | None:
    """The one-time key a delivery was encrypted to, if its manifest's signature verifies."""
    try:
        manifest, _ = read_manifest(home.keys, blob)
    except (CmeError, ValueError):
        return None  # unsigned or forged: it may not decide which of our keys is destroyed
    return manifest.recipient_key_id if valid_prekey_id(manifest.recipient_key_id) else None


def _quarantine(
    home: Home, la_code: str, path: Path, blob: bytes, reason: str, check: str, details: Any
) -> DeliveryQuarantined:
    """Move the delivery, unchanged, into quarantine and build the error to raise."""
    folder = home.settings.quarantine(la_code)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / path.name
    n = 1
    while target.exists():  # never overwrite an earlier quarantined file of the same name
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    move(path, target)  # same file system under the LA's directory: atomic
    facts: dict[str, Any] = dict(details) if isinstance(details, dict) else {"stage": "open"}
    facts.update({"check": check, "delivery_file": path.name, "quarantined_as": target.name,
                  "quarantined_on": dt.date.today().isoformat()})
    prekey_id = _signed_recipient(home, blob)
    if prekey_id is not None:  # its one-time key is destroyed when the quarantine period ends
        facts["prekey_id"] = prekey_id
    note = target.with_name(target.name + REJECTION_SUFFIX)
    write_atomic(note, (json.dumps({"reason": reason, **facts}, indent=1, sort_keys=True) + "\n").encode())
    message = f"delivery {path.name.removesuffix(DELIVERY_SUFFIX)} rejected and quarantined: {reason}"
    return DeliveryQuarantined(message, reason=reason, check=check, details=facts, quarantined=target)



@dataclass(frozen=True)
class QuarantineExpired:
    """A quarantined delivery whose period ended: shredded, its one-time key destroyed."""

    delivery_file: str
    prekey_id: str  # "" when the delivery named none of ours
    prekey_destroyed: bool


def expire_quarantine(home: Home, la_code: str, today: dt.date) -> list[QuarantineExpired]:
    """End the quarantine of deliveries held ``quarantine_days`` or longer.

    Each one's one-time receiving key is destroyed (so no copy of the delivery anywhere opens
    again) and the quarantined file and its note are shredded. Idempotent.

    Args:
        home: the LA's services (keys; the settings give the quarantine period).
        la_code: the LA's ONS code.
        today: the date to judge by.
    """
    folder = home.settings.quarantine(la_code)
    if not folder.is_dir():
        return []
    expired = []
    for note in sorted(folder.glob(f"*{REJECTION_SUFFIX}")):
        try:
            facts = json.loads(note.read_text())
            since = dt.date.fromisoformat(str(facts["quarantined_on"]))
        except (ValueError, KeyError, TypeError):  # an older or damaged note: its file's date
            facts, since = {}, dt.date.fromtimestamp(note.stat().st_mtime)
        if (today - since).days < home.settings.quarantine_days:
            continue
        prekey_id = str(facts.get("prekey_id") or "")
        destroyed = destroy_prekey(home.keys, la_code, prekey_id) if valid_prekey_id(prekey_id) else False
        entry = folder / note.name.removesuffix(REJECTION_SUFFIX)
        if entry.is_symlink():
            entry.unlink()
        elif entry.is_dir():  # a quarantined inbox entry that was a folder
            shutil.rmtree(entry)
        else:
            shred_file(entry)
        shred_file(note)
        delivery = entry.name
        expired.append(QuarantineExpired(delivery, prekey_id, destroyed))
    return expired
