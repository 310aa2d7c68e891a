"""The NHS partner as witness of each LA's evidence ledger (partner side).

For every receipt request an LA leaves in ``la/<code>/outbox/witness/`` (``evidence/witness.py``
writes them), in order, the witness checks:

(a) the checkpoint is signed by the LA key the partner pinned when it first imported the LA's
    prekey bundle (``partner.pinned_la_key``);
(b) the ledger lines extend exactly what it cosigned last for that LA (from the genesis, size 0,
    if it never saw the LA): every entry's hash recomputes, every ``prev_hash`` links, the entry at
    the size it saw still has the head hash it saw, and the last line is the checkpoint's head;
(c) every certificate in the request is signed by the same pinned key and names the head of the
    ledger it was issued against.

Then it signs a cosignature with its own witness key (in the partner's key store) and leaves it
in ``la/<code>/inbox/witness/<n>.json``, or a signed refusal saying what it saw and what the
request changes. Per LA it keeps only ``(size, head_hash, time)`` of the last cosigned checkpoint,
the last request it answered, and per delivery a receipt (certificate, deleted and retained
counts, time), in ``partner/witness/<la>.json``: never a ledger line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cme_pipeline.config import Settings
from cme_pipeline.crypto import KeyStore, signing
from cme_pipeline.crypto.signing import ensure_signing_key, key_id_of
from cme_pipeline.durable import DIR_MODE, write_atomic
from cme_pipeline.evidence import certificate, checkpoints, files, ledger
from cme_pipeline.evidence import witness as la_witness
from cme_pipeline.simulate.partner import partner_keys, pinned_la_key

WITNESS_KEY = "partner/witness.ed25519"  # in the partner's own key store, apart from its delivery key


class Refused(Exception):
    """A request the witness will not cosign; the message is the refusal's reason."""


@dataclass(frozen=True)
class Answer:
    """What the witness did with one request (ids and sizes only)."""

    la_code: str
    n: int
    kind: str  # cosignature | refusal | skipped
    detail: str

    def line(self) -> str:
        """One line for the console."""
        return f"{self.la_code} checkpoint {self.n}: {self.kind} ({self.detail})"


def witness_keys(settings: Settings) -> KeyStore:
    """The partner's key store, its witness key created on first use."""
    keys = partner_keys(settings)
    ensure_signing_key(keys, WITNESS_KEY)
    return keys


def witness_public_key(settings: Settings) -> bytes:
    """The witness's raw public key, for LAs to pin (``cme partner public-key --witness``)."""
    return witness_keys(settings).public_key(WITNESS_KEY)


def state_file(settings: Settings, la_code: str) -> Path:
    """What the witness keeps about one LA."""
    return settings.partner_dir / "witness" / f"{la_code}.json"


def read_state(settings: Settings, la_code: str) -> dict[str, Any]:
    """The witness's record of an LA: last cosigned (size, head_hash, time), last request, receipts."""
    try:
        state: dict[str, Any] = json.loads(state_file(settings, la_code).read_text())
    except FileNotFoundError:
        return {"la_code": la_code, "size": 0, "head_hash": files.GENESIS_HASH, "time": None,
                "last_request": 0, "receipts": {}}
    return state


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    folder = settings.partner_dir / "witness"
    folder.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    fd = os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # two witnesses never answer the same request twice
        yield
    finally:
        os.close(fd)


def las_waiting(settings: Settings) -> list[str]:
    """LAs with receipt requests in their outbox, sorted."""
    root = settings.home / "la"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if la_witness.numbered(la_witness.outbox_dir(settings, p.name)))


def witness(settings: Settings, la_codes: list[str] | None = None) -> list[Answer]:
    """Answer every waiting receipt request of the LAs (default: all with requests), in order.

    Args:
        settings: the home (the partner's area is ``partner/``; the LAs' under ``la/``).
        la_codes: the LAs to serve.
    """
    keys = witness_keys(settings)
    answers: list[Answer] = []
    with _locked(settings):
        for la_code in la_codes if la_codes is not None else las_waiting(settings):
            answers += _serve(settings, keys, la_code)
    return answers


def _serve(settings: Settings, keys: KeyStore, la_code: str) -> list[Answer]:
    state = read_state(settings, la_code)
    pinned = pinned_la_key(settings, la_code)
    out = []
    for n in la_witness.numbered(la_witness.outbox_dir(settings, la_code)):
        if n <= int(state["last_request"]):
            continue  # answered already; the LA retires the request when it files the answer
        if pinned is None:
            out.append(Answer(la_code, n, "skipped", "no LA key pinned: import the LA's prekey bundle first"))
            break
        now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        try:
            request = _read_request(settings, la_code, n)
            receipts = check_request(request, state, pinned)
        except Refused as exc:
            body = _refusal(keys, la_code, n, state, str(exc), now)
            state["last_request"] = n
            out.append(Answer(la_code, n, "refusal", str(exc)))
        else:
            checkpoint = request["checkpoint"]
            body = _cosignature(keys, la_code, n, checkpoint["size"], checkpoint["head_hash"], now)
            state.update(size=checkpoint["size"], head_hash=checkpoint["head_hash"], time=now, last_request=n)
            for delivery_id, receipt in receipts.items():
                if state["receipts"].get(delivery_id, {}).get("status") != "deleted":  # a certificate is final
                    state["receipts"][delivery_id] = receipt | {"time": now}
            out.append(Answer(la_code, n, "cosignature", f"ledger size {checkpoint['size']}, "
                                                         f"{len(receipts)} deletion receipt(s)"))
        # The answer first: a crash before the state is saved answers the same request again.
        write_atomic(la_witness.answer_file(settings, la_code, n), files.canonical(body) + b"\n")
        write_atomic(state_file(settings, la_code), json.dumps(state, indent=1, sort_keys=True).encode())
    return out


def _read_request(settings: Settings, la_code: str, n: int) -> dict[str, Any]:
    try:
        request = json.loads(la_witness.request_file(settings, la_code, n).read_bytes())
    except ValueError:
        raise Refused(f"request {n} is not valid JSON") from None
    if not isinstance(request, dict) or request.get("format") != la_witness.REQUEST_FORMAT:
        raise Refused(f"request {n} is not a {la_witness.REQUEST_FORMAT} request")
    if request.get("la_code") != la_code or request.get("n") != n:
        raise Refused(f"request {n} names LA {request.get('la_code')!s:.12} checkpoint {request.get('n')!s:.12}")
    return request


def check_request(request: dict[str, Any], state: dict[str, Any], pinned: bytes) -> dict[str, dict[str, Any]]:
    """Check a receipt request against what the witness saw; return receipts per delivery id.

    Args:
        request: the LA's request.
        state: the witness's record of the LA (``size``, ``head_hash``).
        pinned: the LA's evidence key the partner pinned.

    Raises:
        Refused: the checkpoint or a certificate is not the LA's, or the lines do not extend
            exactly what the witness cosigned last.
    """
    la_code = str(request["la_code"])
    cp = request.get("checkpoint")
    if not isinstance(cp, dict) or cp.get("la_code") != la_code or not signing.verify_with_public(
            pinned, checkpoints.signed_payload(cp), str(cp.get("signature"))):
        raise Refused(f"checkpoint {request['n']} is not signed by the LA key the partner pinned")
    size, head = cp.get("size"), cp.get("head_hash")
    seen_size, seen_head = int(state["size"]), str(state["head_hash"])
    base = request.get("base") or {}
    base_size, base_hash = base.get("size"), base.get("head_hash")
    lines = request.get("entries")
    if not isinstance(size, int) or not isinstance(base_size, int) or not isinstance(lines, list):
        raise Refused("the request's sizes or ledger lines are missing")
    saw = f"saw size {seen_size} head {seen_head[:16]}"
    if size < seen_size:
        raise Refused(f"{saw}; this request's checkpoint has only {size} entries (truncated)")
    if base_size > seen_size:
        raise Refused(f"{saw}; this request starts at entry {base_size + 1}, so entries {seen_size + 1}-{base_size} "
                      f"were never shown to the witness")
    if len(lines) != size - base_size:
        raise Refused(f"the request holds {len(lines)} ledger lines for entries {base_size + 1}-{size}")
    hashes = _walk(lines, base_size, str(base_hash), la_code, saw)
    at_seen = hashes[seen_size - base_size]
    if at_seen != seen_head:
        raise Refused(f"{saw}; this request rewrites entry {seen_size} or one before it (its entry {seen_size} "
                      f"hashes to {at_seen[:16]})" if seen_size else f"{saw}; this request does not start the chain")
    if hashes[-1] != head:
        raise Refused(f"checkpoint {request['n']}'s head hash is not the hash of entry {size}")
    return _receipts(request, lines, hashes, base_size, pinned)


def _walk(lines: list[Any], base_size: int, base_hash: str, la_code: str, saw: str) -> list[str]:
    """Hashes of the chain from the base on (index 0: the base's head), every link checked.

    A line that does not link names the entry before it: that entry (or one before it, whose
    hash it covers) is not the one the chain had when the next was appended.
    """
    hashes = [base_hash]
    for offset, line in enumerate(lines, start=1):
        position = base_size + offset
        try:
            entry = json.loads(line) if isinstance(line, str) else None
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            raise Refused(f"ledger line {position} is not valid JSON")
        if entry.get("seq") != position or entry.get("la_code") != la_code:
            raise Refused(f"ledger line {position} holds entry {entry.get('seq')!s:.12} of LA {entry.get('la_code')!s:.12}")
        if entry.get("hash") != ledger.entry_hash(entry):
            raise Refused(f"{saw}; this request rewrites entry {position} (its hash does not recompute)")
        if entry.get("prev_hash") != hashes[-1]:
            raise Refused(f"{saw}; this request rewrites entry {position - 1} or one before it (entry {position} "
                          f"does not link to it)")
        hashes.append(str(entry["hash"]))
    return hashes


def _receipts(
    request: dict[str, Any], lines: list[Any], hashes: list[str], base_size: int, pinned: bytes,
) -> dict[str, dict[str, Any]]:
    """Deletion receipts from the certificates (checked), and rejections from the ledger lines."""
    la_code, n = str(request["la_code"]), request["n"]
    receipts: dict[str, dict[str, Any]] = {}
    for body in request.get("certificates") or []:
        if not isinstance(body, dict) or body.get("la_code") != la_code or not signing.verify_with_public(
                pinned, certificate.signed_payload(body), str(body.get("signature"))):
            raise Refused(f"a certificate in request {n} is not signed by the LA key the partner pinned")
        issued_at = body.get("ledger_size")
        if isinstance(issued_at, int) and base_size < issued_at < len(hashes) + base_size and \
                hashes[issued_at - base_size] != body.get("ledger_head_hash"):
            raise Refused(f"the certificate of run {body.get('run_id')!s:.60} names a ledger head these lines do not have")
        facts = body.get("facts") or {}
        receipts[str(facts.get("delivery_id"))] = {
            "status": "deleted", "checkpoint": n, "certificate": body.get("run_id"),
            "received": facts.get("received"), "deleted": body.get("matched"), "retained": facts.get("retained"),
        }
    for line in lines:
        entry = json.loads(line)
        facts = entry.get("facts") or {}
        if entry.get("event") == "delivery_rejected":
            delivery_id = str(facts.get("delivery_file", "")).removesuffix(".cmedelivery")
            receipts.setdefault(delivery_id, {"status": "rejected", "checkpoint": n, "check": facts.get("check")})
    return receipts


def _cosignature(keys: KeyStore, la_code: str, n: int, size: int, head_hash: str, now: str) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": la_witness.COSIGNATURE, "n": n, "la_code": la_code, "size": size,
                            "head_hash": head_hash, "time": now, "witness_key_id": key_id_of(keys.public_key(WITNESS_KEY))}
    body["signature"] = _sign(keys, la_witness.signed_payload(body))
    return body


def _refusal(keys: KeyStore, la_code: str, n: int, state: dict[str, Any], reason: str, now: str) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": la_witness.REFUSAL, "n": n, "la_code": la_code, "saw_size": state["size"],
                            "saw_head_hash": state["head_hash"], "reason": reason, "time": now,
                            "witness_key_id": key_id_of(keys.public_key(WITNESS_KEY))}
    body["signature"] = _sign(keys, la_witness.signed_payload(body))
    return body


def _sign(keys: KeyStore, payload: bytes) -> str:
    import base64

    return base64.b64encode(keys.sign(WITNESS_KEY, payload)).decode()


def witness_embedded(settings: Settings, la_codes: list[str] | None = None) -> list[Answer]:
    """Embedded set-up: the partner answers what waits, and each LA files the answers at once.

    Both sides live in one home in the simulation; this is what each would do on its own (``cme
    partner witness``; the LA files answers whenever it next checkpoints or is asked to).

    Args:
        settings: the home.
        la_codes: the LAs (default: every LA with a request waiting).
    """
    from cme_pipeline.home import open_home

    answers = witness(settings, la_codes)
    la_keys = open_home(settings).keys
    for la_code in sorted({a.la_code for a in answers}):
        la_witness.collect_answers(settings, la_keys, la_code)
    return answers
