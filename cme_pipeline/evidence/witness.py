"""Deletion receipts: the NHS partner witnesses each signed checkpoint of the LA's ledger.

Signed checkpoints stop anyone who cannot sign; they do not stop an operator who holds the LA's
home *and* its key store: such a person can cut children out of a run, rehash the ledger and
re-sign every checkpoint and certificate. A witness outside the LA's control closes that. After
each checkpoint the LA writes a *receipt request* for the partner (``la/<code>/outbox/witness/
<n>.json``, n the checkpoint's number): the signed checkpoint, the ledger lines since the last
checkpoint the witness cosigned (or since the previous request, while that one still waits: the
witness answers in order), and the deletion certificates whose runs completed in those lines. The witness (partner side, ``simulate/witness.py``) checks the lines extend exactly what
it saw, signs a *cosignature* over ``{la_code, size, head_hash, time, witness_key_id}`` (or a
signed *refusal*) and drops it in ``la/<code>/inbox/witness/``; the LA files every answer in
``evidence/cosignatures.jsonl``. ``check_witness`` (called by ``verify``) then holds the ledger
to what the witness saw: a rewrite behind a cosigned checkpoint no longer verifies, whoever
re-signed it. Nothing here holds personal data: the ledger holds none.

Transport is files, as with any third party. Requests are written only once the LA has pinned
the witness's public key (``cme keys pin-witness``); a checkpoint taken before that is covered by
the witness's first cosignature, which checks the whole chain from its genesis.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cme_pipeline import durable
from cme_pipeline.config import Settings
from cme_pipeline.crypto import KeyStore, signing
from cme_pipeline.evidence import files
from cme_pipeline.evidence.checkpoints import read_checkpoints

log = logging.getLogger(__name__)

WITNESS_PINNED = "pinned/nhs-witness.ed25519"  # the witness's public key, pinned in the LA's store
REQUEST_FORMAT = "cme-witness-request/1"
COSIGNATURE, REFUSAL = "cosignature", "refusal"
COSIGNED_FIELDS = ("la_code", "size", "head_hash", "time", "witness_key_id")
REFUSAL_FIELDS = ("kind", "n", "la_code", "saw_size", "saw_head_hash", "reason", "time", "witness_key_id")


# -- keys and places ---------------------------------------------------------------------------


def pin_witness_key(keys: KeyStore, public_raw: bytes) -> str:
    """Pin the NHS partner's witness key (Ed25519 public) in the LA's key store; return its id.

    Args:
        keys: the LA's key store.
        public_raw: the witness's raw 32-byte public key.

    Raises:
        KeyUnavailable: a different witness key is pinned already (re-pinning is a deliberate,
            manual act: destroy the old pin first).
    """
    return signing.pin_public_key(keys, WITNESS_PINNED, public_raw, "NHS partner witness key")


def pinned_witness_key(keys: KeyStore) -> bytes | None:
    """The witness key the LA pinned, or None if it has not set a witness up."""
    return keys.public_key(WITNESS_PINNED) if keys.exists(WITNESS_PINNED) else None


def outbox_dir(settings: Settings, la_code: str) -> Path:
    """Where the LA leaves receipt requests for the witness."""
    return settings.la_dir(la_code) / "outbox" / "witness"


def inbox_dir(settings: Settings, la_code: str) -> Path:
    """Where the witness leaves its answers for the LA."""
    return settings.inbox(la_code) / "witness"


def request_file(settings: Settings, la_code: str, n: int) -> Path:
    """The receipt request of checkpoint ``n``."""
    return outbox_dir(settings, la_code) / f"{n}.json"


def answer_file(settings: Settings, la_code: str, n: int) -> Path:
    """The witness's answer to the request of checkpoint ``n``."""
    return inbox_dir(settings, la_code) / f"{n}.json"


def cosignatures_file(settings: Settings, la_code: str) -> Path:
    """Every answer of the witness the LA received (JSON lines): cosignatures and refusals."""
    return settings.evidence_dir(la_code) / "cosignatures.jsonl"


def numbered(folder: Path) -> list[int]:
    """The checkpoint numbers of the ``<n>.json`` files in a folder, ascending."""
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit() and p.is_file())


# -- what is signed ----------------------------------------------------------------------------


def signed_payload(answer: dict[str, Any]) -> bytes:
    """The bytes the witness's signature covers: a cosignature's five fields, or a refusal's."""
    fields = COSIGNED_FIELDS if answer.get("kind") == COSIGNATURE else REFUSAL_FIELDS
    return files.canonical({k: answer.get(k) for k in fields})


def answer_verifies(answer: dict[str, Any], witness_public: bytes) -> bool:
    """True when ``answer`` carries a valid signature of the pinned witness key."""
    return answer.get("kind") in (COSIGNATURE, REFUSAL) and signing.verify_with_public(
        witness_public, signed_payload(answer), str(answer.get("signature")))


# -- the LA's side of the exchange -------------------------------------------------------------


def _parse(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _read_stored(settings: Settings, la_code: str) -> list[dict[str, Any]]:
    return files.read_objects(cosignatures_file(settings, la_code))


def read_answers(settings: Settings, la_code: str) -> list[dict[str, Any]]:
    """The witness's answers the LA holds: those filed, then any still in its inbox (not verified)."""
    stored = _read_stored(settings, la_code)
    seen = {(a.get("n"), a.get("kind"), a.get("signature")) for a in stored}
    for n in numbered(inbox_dir(settings, la_code)):
        body = _parse(answer_file(settings, la_code, n))
        if body is not None and (body.get("n"), body.get("kind"), body.get("signature")) not in seen:
            stored.append(body)
    return stored


def _file_answers(settings: Settings, la_code: str, witness_public: bytes) -> int:
    """Move the witness's answers from the inbox into ``cosignatures.jsonl`` (the caller holds the
    evidence lock); an answer that verifies retires its request from the outbox."""
    waiting = numbered(inbox_dir(settings, la_code))
    if not waiting:
        return 0
    try:  # a signature is unique: seeing its bytes in the file is enough (no parse of every line)
        stored = cosignatures_file(settings, la_code).read_bytes()
    except FileNotFoundError:
        stored = b""
    filed = 0
    for n in waiting:
        path = answer_file(settings, la_code, n)
        body = _parse(path)
        if body is None or body.get("n") != n:
            continue  # left where it is; verify names it if it ever matters
        if files.canonical({"signature": body.get("signature")})[1:-1] not in stored:
            durable.append_line(cosignatures_file(settings, la_code), files.canonical(body))
            filed += 1
        if answer_verifies(body, witness_public):
            request_file(settings, la_code, n).unlink(missing_ok=True)
        path.unlink()
        durable.fsync_dir(path.parent)
    return filed


def collect_answers(settings: Settings, keys: KeyStore, la_code: str) -> int:
    """File the witness's answers waiting in the LA's inbox; return how many were new.

    Args:
        settings: the home.
        keys: the LA's key store (the pinned witness key).
        la_code: the LA.
    """
    witness_public = pinned_witness_key(keys)
    if witness_public is None:
        return 0
    with files.locked(settings, la_code):
        return _file_answers(settings, la_code, witness_public)


def _last_cosigned(answers: list[dict[str, Any]], witness_public: bytes) -> tuple[int, str]:
    """(size, head) of the largest cosignature that verifies; genesis if none does.

    Largest first, stopping at the first that verifies: one signature check per checkpoint, not
    one per answer ever filed.
    """
    cosigned = [a for a in answers if a.get("kind") == COSIGNATURE and isinstance(a.get("size"), int)]
    for answer in sorted(cosigned, key=lambda a: a["size"], reverse=True):
        if answer_verifies(answer, witness_public):
            return answer["size"], str(answer.get("head_hash"))
    return 0, files.GENESIS_HASH


def send_requests(settings: Settings, keys: KeyStore, la_code: str) -> list[int]:
    """Write a receipt request for every checkpoint not yet sent; return their numbers.

    Called by ``checkpoints.checkpoint`` right after it signs, under the evidence lock (so the
    ledger cannot grow in between). Does nothing while no witness key is pinned. The first
    request of an LA covers only its latest checkpoint (with every line from the genesis);
    afterwards each checkpoint gets its own, so none goes unwitnessed.

    Args:
        settings: the home.
        keys: the LA's key store.
        la_code: the LA.
    """
    witness_public = pinned_witness_key(keys)
    if witness_public is None:
        return []
    try:
        _file_answers(settings, la_code, witness_public)
        return _write_requests(settings, la_code, witness_public)
    except OSError as exc:  # the checkpoint stands; the next one sends what this one could not
        log.warning("%s: receipt request not written (%s); the next checkpoint sends it", la_code, exc.strerror)
        return []


def _write_requests(settings: Settings, la_code: str, witness_public: bytes) -> list[int]:
    checkpoints = [c for c in read_checkpoints(settings, la_code) if isinstance(c.get("n"), int)
                   and isinstance(c.get("size"), int)]
    if not checkpoints:
        return []
    answers = [a for a in _read_stored(settings, la_code) if isinstance(a.get("n"), int)]
    known = {a["n"] for a in answers} | set(numbered(outbox_dir(settings, la_code)))
    todo = [c for c in checkpoints if c["n"] > max(known)] if known else checkpoints[-1:]
    base_size, base_hash = _base(settings, la_code, answers, witness_public)
    lines = files.read_lines(files.ledger_file(settings, la_code))
    written = []
    for cp in todo:
        new = [line.decode("utf-8", errors="replace") for line in lines[base_size:cp["size"]]]
        request = {
            "format": REQUEST_FORMAT,
            "la_code": la_code,
            "n": cp["n"],
            "checkpoint": cp,
            "base": {"size": base_size, "head_hash": base_hash},
            "entries": new,
            "certificates": _certificates(settings, la_code, new),
            "prepared_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        durable.write_atomic(request_file(settings, la_code, cp["n"]), files.canonical(request) + b"\n")
        written.append(cp["n"])
        base_size, base_hash = cp["size"], str(cp.get("head_hash"))
    return written


def _base(settings: Settings, la_code: str, answers: list[dict[str, Any]], witness_public: bytes) -> tuple[int, str]:
    """Where a new request's lines start: the last checkpoint the witness cosigned or, while
    requests still wait, the newest waiting one's checkpoint (the witness answers them in order,
    so a backlog costs each line once, not once per request behind it)."""
    size, head = _last_cosigned(answers, witness_public)
    answered = {a.get("n") for a in answers}
    waiting = [n for n in numbered(outbox_dir(settings, la_code)) if n not in answered]
    before = _parse(request_file(settings, la_code, waiting[-1])) if waiting else None
    cp = (before or {}).get("checkpoint")
    if isinstance(cp, dict) and isinstance(cp.get("size"), int) and cp["size"] >= size:
        return cp["size"], str(cp.get("head_hash"))
    return size, head


def _certificates(settings: Settings, la_code: str, lines: list[str]) -> list[dict[str, Any]]:
    """The certificates of the runs that completed in ``lines``, as issued."""
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("event") != "run_completed":
            continue
        name = str((entry.get("facts") or {}).get("certificate"))
        body = _parse(files.certificates_dir(settings, la_code) / name) if "/" not in name else None
        if body is not None:
            out.append(body)
    return out


def waiting_requests(settings: Settings, la_code: str) -> list[int]:
    """Checkpoints whose receipt request waits for the witness (no answer held yet)."""
    answered = {a.get("n") for a in read_answers(settings, la_code)}
    return [n for n in numbered(outbox_dir(settings, la_code)) if n not in answered]


# -- verification ------------------------------------------------------------------------------


@dataclass
class WitnessCheck:
    """What ``check_witness`` found for one LA."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cosigned: int = 0


def check_witness(settings: Settings, keys: KeyStore, la_code: str, entries: list[dict[str, Any]]) -> WitnessCheck:
    """Hold the LA's ledger and checkpoints to what the witness cosigned.

    Problems: an answer that does not verify with the pinned witness key; a refusal; a
    cosignature whose (size, head hash) is not the ledger's now (rewritten after the witness saw
    it); a checkpoint the witness never cosigned though it answered later ones. Notes: no
    witness key pinned; requests still waiting; checkpoints taken before the witness was set up.

    Args:
        settings: the home.
        keys: the LA's key store (the pinned witness key).
        la_code: the LA.
        entries: the LA's ledger entries in file order (as ``chain.check_chain`` parsed them).
    """
    result = WitnessCheck()
    checkpoints = [c for c in read_checkpoints(settings, la_code) if isinstance(c.get("n"), int)]
    witness_public = pinned_witness_key(keys)
    if witness_public is None:
        if checkpoints:
            result.notes.append(f"{la_code}: no witness key pinned, so no checkpoint was checked against the NHS "
                                f"partner's witness (cme keys pin-witness)")
        return result
    cosigned_heads: set[tuple[Any, Any]] = set()
    answered: set[int] = set()
    for answer in read_answers(settings, la_code):
        n = answer.get("n")
        if answer.get("unreadable"):
            result.problems.append(f"{la_code} cosignatures line {answer.get('line')}: not valid JSON (edited)")
            continue
        if not answer_verifies(answer, witness_public) or answer.get("la_code") != la_code:
            result.problems.append(f"{la_code} checkpoint {n}: the witness's answer does not verify with the pinned "
                                   f"witness key (forged or edited)")
            continue
        if isinstance(n, int):
            answered.add(n)
        if answer["kind"] == REFUSAL:
            result.problems.append(f"{la_code} checkpoint {n}: the witness refused to cosign it: {answer.get('reason')}")
            continue
        size, head = answer.get("size"), answer.get("head_hash")
        cosigned_heads.add((size, head))
        result.cosigned += 1
        now = _hash_at(entries, size)
        if now is None:
            result.problems.append(f"{la_code} checkpoint {n}: the witness cosigned a ledger of {size} entries, "
                                   f"found {len(entries)} (truncated)")
        elif now != head:
            result.problems.append(f"{la_code} checkpoint {n}: the witness saw a different ledger at size {size} "
                                   f"(it cosigned head {str(head)[:16]}, entry {size} now hashes to {now[:16]}): "
                                   f"rewritten after the witness saw it")
    _check_coverage(settings, la_code, checkpoints, cosigned_heads, answered, result)
    return result


def _hash_at(entries: list[dict[str, Any]], size: Any) -> str | None:
    if not isinstance(size, int) or size < 0 or size > len(entries):
        return None
    return str(entries[size - 1].get("hash")) if size else files.GENESIS_HASH


def _check_coverage(
    settings: Settings, la_code: str, checkpoints: list[dict[str, Any]],
    cosigned_heads: set[tuple[Any, Any]], answered: set[int], result: WitnessCheck,
) -> None:
    pending = set(numbered(outbox_dir(settings, la_code))) - answered
    sent = answered | pending
    first, last_answered = min(sent, default=None), max(answered, default=0)
    waiting, before, unsent = [], [], []
    for cp in checkpoints:
        n = cp["n"]
        if n in answered or (cp.get("size"), cp.get("head_hash")) in cosigned_heads:
            continue
        if n in pending:
            waiting.append(n)
        elif first is None or n < first:
            before.append(n)
        elif n < last_answered:
            result.problems.append(
                f"{la_code} checkpoint {n} (ledger size {cp.get('size')}): never cosigned by the witness, though it "
                f"answered checkpoint {last_answered} (request withheld, or its answer deleted)")
        else:
            unsent.append(n)
    if waiting:
        result.notes.append(f"{la_code}: checkpoint(s) {_spans(waiting)} await the witness's answer (receipt "
                            f"request in la/{la_code}/outbox/witness)")
    if before:
        covered = "checked" if result.cosigned else "will check"
        result.notes.append(f"{la_code}: checkpoint(s) {_spans(before)} predate the witness; its first cosignature "
                            f"{covered} the chain they sign from the genesis")
    if unsent:
        result.notes.append(f"{la_code}: checkpoint(s) {_spans(unsent)} not yet sent to the witness (the next "
                            f"checkpoint sends them)")


def _spans(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3, 7``."""
    out: list[str] = []
    for n in sorted(numbers):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)
