"""The append-only, hash-chained evidence ledger of one LA.

Each entry holds ids, counts, key ids, suite names and outcomes: never personal data, not even
hashed identifiers (an unsalted hash of an NHS number is reversible in minutes). Each entry's
``hash`` covers every other field including ``prev_hash``, so editing, reordering or deleting an
entry breaks the chain; signed checkpoints (``checkpoints.py``) catch truncation and rewriting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from cme_pipeline import __version__, durable
from cme_pipeline.config import Settings
from cme_pipeline.errors import CmeError
from cme_pipeline.evidence import files

EVENTS = frozenset({
    "delivery_received", "delivery_rejected", "delivery_validated", "registers_validated",
    "matched", "minimised", "key_destroyed", "retained", "retained_validated",
    "run_completed", "run_failed", "purged", "reviewed", "receiving_key_destroyed", "quarantine_expired",
    "registers_imported", "registers_refused", "follow_up_recorded", "artefact_written", "subject_access",
    "cross_la_check", "transfer_sent", "transfer_received", "transfer_acknowledged", "earlier_records",
})
# Run ids of an analyst's action outside Airflow (applying review decisions, importing a register
# from the command line, recording follow-up findings): the ledger's cross-check with Airflow's run history does not look for
# them there.
REVIEW_RUN_PREFIX = "review__"
REGISTERS_RUN_PREFIX = "registers__"
FOLLOW_UP_RUN_PREFIX = "followup__"
SAR_RUN_PREFIX = "sar__"
CROSS_LA_RUN_PREFIX = "crossla__"  # one cross-LA check of a round (la/cross_la.py), in or out of Airflow
TRANSFER_RUN_PREFIX = "transfer__"  # a receiving LA's acknowledgement of transfers (la/transfers.py)
ANALYST_RUN_PREFIXES = (REVIEW_RUN_PREFIX, REGISTERS_RUN_PREFIX, FOLLOW_UP_RUN_PREFIX, SAR_RUN_PREFIX,
                        CROSS_LA_RUN_PREFIX, TRANSFER_RUN_PREFIX)
ENTRY_FIELDS = ("seq", "time", "la_code", "run_id", "event", "facts", "code_version", "config_hash", "prev_hash")

# Ten digits standing alone (optionally 3-3-4 with spaces or hyphens): what an NHS number looks
# like. Letters or digits either side mean it is part of a longer token such as a SHA-256 hex.
_NHS_LIKE = re.compile(r"(?<![0-9A-Za-z])\d{3}[ -]?\d{3}[ -]?\d{4}(?![0-9A-Za-z])")


class EvidenceRefused(CmeError):
    """Facts offered to the ledger are not allowed there (unknown event, or personal-looking data)."""


def config_hash(settings: Settings) -> str:
    """SHA-256 of the settings that change what a run does (thresholds, retention).

    Paths, database URLs and the key store are left out: they say where, not how, and a URL may
    hold a password (a ``pkcs11:`` URI may hold the token's PIN).
    """
    fields = dataclasses.asdict(settings)
    kept = {k: v for k, v in fields.items()
            if k not in ("home", "database_url", "airflow_database_url", "keystore", "evidence_pins")}
    return files.sha256(files.canonical(kept))


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash an entry must carry: SHA-256 of its canonical JSON without ``hash``."""
    return files.sha256(files.canonical({k: entry[k] for k in ENTRY_FIELDS if k in entry}))


def check_facts(facts: Any, where: str = "facts") -> None:
    """Refuse facts that are not plain JSON or that hold anything looking like an NHS number.

    Args:
        facts: the facts (or a part of them, when recursing).
        where: the path of the part, named in the error (never the value).
    """
    if isinstance(facts, bool) or facts is None or isinstance(facts, float):
        return
    if isinstance(facts, int):
        if 10**9 <= abs(facts) < 10**10:
            raise EvidenceRefused(f"ledger refuses {where}: a ten-digit number may be an NHS number")
        return
    if isinstance(facts, str):
        if _NHS_LIKE.search(facts):
            raise EvidenceRefused(f"ledger refuses {where}: text holds ten digits that may be an NHS number")
        return
    if isinstance(facts, Mapping):
        for key, value in facts.items():
            if not isinstance(key, str):
                raise EvidenceRefused(f"ledger refuses {where}: keys must be text")
            check_facts(key, f"{where} key")
            check_facts(value, f"{where}.{key}" if not _NHS_LIKE.search(key) else f"{where}.?")
        return
    if isinstance(facts, (list, tuple)):
        for i, value in enumerate(facts):
            check_facts(value, f"{where}[{i}]")
        return
    raise EvidenceRefused(f"ledger refuses {where}: {type(facts).__name__} is not plain JSON")


def read_entries(settings: Settings, la_code: str) -> list[dict[str, Any]]:
    """Every entry of the LA's ledger, in file order, parsed but not verified.

    Args:
        settings: the home.
        la_code: the LA.

    Raises:
        CmeError: a line is not JSON (``verify`` reports this per line instead).
    """
    entries = []
    for number, line in enumerate(files.read_lines(files.ledger_file(settings, la_code)), start=1):
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise CmeError(f"{la_code} ledger line {number}: not valid JSON") from None
    return entries



def processed_deliveries(settings: Settings, la_code: str) -> dict[str, str]:
    """Delivery id -> extract date of every delivery of the LA whose run completed.

    The ledger, not the store, is the record: a restored or rebuilt database cannot make an LA
    forget what it already processed (and deleted).

    Args:
        settings: the home.
        la_code: the LA.
    """
    entries = read_entries(settings, la_code)
    completed = {e.get("run_id") for e in entries if e.get("event") == "run_completed"}
    return {
        str(facts.get("delivery_id")): str(facts.get("extract_date"))
        for e in entries
        if e.get("event") == "delivery_received" and e.get("run_id") in completed
        for facts in [e.get("facts") or {}]
    }


def head(lines: list[bytes]) -> dict[str, Any] | None:
    """The last entry of a ledger given as lines, parsed (None for an empty ledger).

    Raises:
        CmeError: the last line is not JSON (appending would extend a broken chain).
    """
    if not lines:
        return None
    try:
        last: dict[str, Any] = json.loads(lines[-1])
    except ValueError:
        raise CmeError(f"ledger line {len(lines)}: not valid JSON; run cme evidence verify") from None
    return last


def tip(lines: list[bytes]) -> tuple[int, str]:
    """(size, head hash) of a ledger given as lines: what checkpoints and certificates sign."""
    last = head(lines)
    return len(lines), str(last["hash"]) if last else files.GENESIS_HASH


def run_entries(settings: Settings, la_code: str, run_id: str) -> list[dict[str, Any]]:
    """The entries of one run, in ledger order.

    Args:
        settings: the home.
        la_code: the LA.
        run_id: the Airflow run id.
    """
    return [e for e in read_entries(settings, la_code) if e.get("run_id") == run_id]


def record(settings: Settings, la_code: str, run_id: str, event: str, facts: Mapping[str, Any]) -> None:
    """Append a hash-chained entry to the LA's ledger; do nothing if the same entry exists.

    Idempotent for task retries: an entry with the same ``(run_id, event, facts)`` is not
    written twice.

    Args:
        settings: the home.
        la_code: the LA whose ledger it is.
        run_id: the Airflow run id.
        event: one of ``EVENTS``.
        facts: ids, counts, key ids, suite names and booleans; plain JSON.

    Raises:
        EvidenceRefused: unknown event, facts not plain JSON, or anything like an NHS number.
    """
    if event not in EVENTS:
        raise EvidenceRefused(f"ledger refuses unknown event {event!r}")
    check_facts(dict(facts))
    plain = json.loads(files.canonical(dict(facts)))  # tuples become lists, as they will on reading
    with files.locked(settings, la_code):
        lines = files.read_lines(files.ledger_file(settings, la_code))
        # Only lines naming this run can be a retry's twin: skip parsing the rest (the ledger
        # grows by a few entries per run for years; a full parse per append would be quadratic).
        needle = json.dumps(run_id, ensure_ascii=False).encode()
        for line in lines:
            if needle in line:
                seen = json.loads(line)
                if seen.get("run_id") == run_id and seen.get("event") == event and seen.get("facts") == plain:
                    return
        last = head(lines)
        entry: dict[str, Any] = {
            "seq": (int(last["seq"]) + 1) if last else 1,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "la_code": la_code,
            "run_id": run_id,
            "event": event,
            "facts": plain,
            "code_version": __version__,
            "config_hash": config_hash(settings),
            "prev_hash": str(last["hash"]) if last else files.GENESIS_HASH,
        }
        entry["hash"] = entry_hash(entry)
        durable.append_line(files.ledger_file(settings, la_code), files.canonical(entry))
