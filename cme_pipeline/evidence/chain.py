"""Checks of one LA's ledger and checkpoints: the hash chain, entry order, signatures, truncation."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cme_pipeline.config import Settings
from cme_pipeline.crypto import KeyStore, signing
from cme_pipeline.evidence import files
from cme_pipeline.evidence.checkpoints import read_checkpoints, signed_payload
from cme_pipeline.evidence.ledger import entry_hash

# A run's last entry: from here on a checkpoint must cover it (steps checkpoint at once).
TERMINAL_EVENTS = frozenset({"run_completed", "run_failed", "delivery_rejected", "purged", "reviewed",
                             "quarantine_expired", "registers_imported", "registers_refused",
                             "follow_up_recorded", "subject_access", "cross_la_check",
                             "transfer_sent", "transfer_received", "transfer_acknowledged"})


@dataclass
class ChainResult:
    """What the chain check found for one LA; ``entries`` are the parsed lines in file order."""

    la_code: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checkpoints: int = 0


def check_chain(settings: Settings, keys: KeyStore, la_code: str, open_runs: frozenset[str] = frozenset()) -> ChainResult:
    """Check the LA's ledger and checkpoints.

    Args:
        settings: the home.
        keys: the key store holding the LA's evidence verification key.
        la_code: the LA.
        open_runs: runs still in progress, whose entries may not be covered by a checkpoint yet.
    """
    result = ChainResult(la_code)
    _check_entries(settings, la_code, result)
    _check_checkpoints(settings, keys, la_code, result, open_runs)
    pem = files.public_key_file(settings, la_code)
    if pem.is_file() and not signing.matches_public_pem(keys, la_code, pem.read_bytes()):
        result.problems.append(f"{la_code} exported verification key does not match the LA's evidence key (replaced)")
    return result


def _check_entries(settings: Settings, la_code: str, result: ChainResult) -> None:
    where = f"{la_code} ledger"
    problems = result.problems
    previous: dict[str, Any] | None = None
    for line_no, line in enumerate(files.read_lines(files.ledger_file(settings, la_code)), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            problems.append(f"{where} line {line_no}: not valid JSON (edited)")
            result.entries.append({"seq": None, "hash": None})
            previous = None
            continue
        result.entries.append(entry)
        seq = entry.get("seq")
        name = f"{where} entry {seq}"
        intact = entry.get("hash") == entry_hash(entry)
        if not intact:
            problems.append(f"{name}: hash mismatch (edited)")
        if entry.get("la_code") != la_code:
            problems.append(f"{name}: belongs to LA {entry.get('la_code')!s:.12} (moved between ledgers)")
        if seq == line_no and intact and previous is not None and previous.get("seq") == line_no - 1:
            if entry.get("prev_hash") != previous.get("hash"):
                problems.append(f"{name}: previous hash does not match entry {line_no - 1} (chain rewritten)")
        elif seq == 1 and intact and entry.get("prev_hash") != files.GENESIS_HASH:
            problems.append(f"{name}: first entry does not start the chain")
        previous = entry
    _check_order(where, result)


def _check_order(where: str, result: ChainResult) -> None:
    seqs = [e.get("seq") for e in result.entries if e.get("seq") is not None]
    if not seqs:
        return
    ints = [s for s in seqs if isinstance(s, int)]
    counts = Counter(ints)
    for seq, times in sorted(counts.items()):
        if times > 1:
            result.problems.append(f"{where} entry {seq}: appears {times} times (duplicated)")
    top = max(ints, default=0)
    missing = sorted(set(range(1, top + 1)) - set(ints))
    if missing:
        shown = ", ".join(str(s) for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
        result.problems.append(f"{where}: entries missing (deleted): {shown}")
    out_of_place = [
        (line_no, e.get("seq"))
        for line_no, e in enumerate(result.entries, start=1)
        if e.get("seq") is not None and e.get("seq") != line_no
    ]
    if out_of_place and not missing and len(ints) == len(counts):
        line_no, found = out_of_place[0]
        result.problems.append(f"{where}: entries out of order (line {line_no} holds entry {found})")


def _check_checkpoints(settings: Settings, keys: KeyStore, la_code: str, result: ChainResult, open_runs: frozenset[str]) -> None:
    where = f"{la_code}"
    entries = result.entries
    covered = 0
    last_size = 0
    checkpoints = read_checkpoints(settings, la_code)
    result.checkpoints = len(checkpoints)
    for position, cp in enumerate(checkpoints, start=1):
        if cp.get("unreadable"):
            result.problems.append(f"{where} checkpoint line {position}: not valid JSON (edited)")
            continue
        n = cp.get("n")
        if n != position:
            result.problems.append(f"{where} checkpoint {n}: out of place at line {position} (reordered or deleted)")
        if cp.get("la_code") != la_code or not signing.verify(keys, la_code, signed_payload(cp), str(cp.get("signature"))):
            result.problems.append(f"{where} checkpoint {n}: signature invalid (forged or edited)")
            continue
        size = cp.get("size")
        if not isinstance(size, int):
            continue
        if size < last_size:
            result.problems.append(f"{where} checkpoint {n}: ledger size went down from {last_size} to {size}")
        last_size = max(last_size, size)
        if size > len(entries):
            result.problems.append(
                f"{where} ledger truncated: checkpoint {n} says {size} entries, found {len(entries)}"
            )
            continue
        head = entries[size - 1].get("hash") if size else files.GENESIS_HASH
        if head != cp.get("head_hash"):
            result.problems.append(
                f"{where} checkpoint {n}: head hash does not match ledger entry {size} (ledger rewritten)"
            )
        covered = max(covered, size)
    _check_tail(where, result, covered, open_runs)


def _check_tail(where: str, result: ChainResult, covered: int, open_runs: frozenset[str]) -> None:
    tail = result.entries[covered:]
    if not tail:
        return
    finished = sorted({
        str(e.get("run_id")) for e in tail
        if e.get("event") in TERMINAL_EVENTS and e.get("run_id") not in open_runs
    })
    if finished:
        result.problems.append(
            f"{where} ledger entries after {covered} are not covered by a signed checkpoint though run "
            f"{finished[0]} finished (checkpoint deleted?)"
        )
    else:
        result.notes.append(f"{where}: {len(tail)} ledger entries of runs in progress are not yet checkpointed")
