"""Transfers between LAs (the 28-day rule): a retained child found on another Welsh LA's register is
that LA's to know about, within 28 days.

``send`` seals each child's record under a key of its own in the receiving LA's part of the key
store (``crypto.transfer``) and stores it in the receiving LA's store (an "in" row); the sending
LA keeps an "out" row with no data (id, LA, date), and both ledgers record the transfer (ids and
counts). The receiving LA's officer reads it (``open_incoming``) and acknowledges it
(``acknowledge``): its sealed record is deleted and its key destroyed, and both sides' rows and
ledgers say so. A transfer not acknowledged within ``ACKNOWLEDGE_DAYS`` is overdue on both sides.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cme_pipeline import evidence
from cme_pipeline.crypto.transfer import create_transfer_keys, destroy_transfer_key, transfer_cipher
from cme_pipeline.errors import UsageError
from cme_pipeline.home import Home
from cme_pipeline.la.minimise import open_fields, seal_fields
from cme_pipeline.schemas import RETAINED_HEALTH_FIELDS
from cme_pipeline.store import transfers as tstore

ACKNOWLEDGE_DAYS = 28  # the regulations: the receiving LA must be told within 28 days


@dataclass(frozen=True)
class Transfer:
    """One transfer as either side lists it: ids, LA codes and dates only."""

    transfer_id: str
    direction: str  # out | in
    other_la: str
    sent_on: dt.date
    acknowledged_on: dt.date | None

    def overdue(self, today: dt.date) -> bool:
        """Not acknowledged within ``ACKNOWLEDGE_DAYS`` of being sent."""
        return self.acknowledged_on is None and today > self.sent_on + dt.timedelta(days=ACKNOWLEDGE_DAYS)


def send(home: Home, from_la: str, records: pd.DataFrame, to_las: list[str], today: dt.date, run_id: str) -> list[str]:
    """Transfer children to other LAs: sealed into each receiving LA's store; return the transfer ids.

    Call before deleting the children here, so a crash between leaves them held (and sent again).

    Args:
        home: the services (both LAs' stores, the key store).
        from_la: the sending LA.
        records: the children's decrypted retained records (``RETAINED_HEALTH_FIELDS``).
        to_las: the receiving LA of each record, in order.
        today: the day sent.
        run_id: the run recording it (the cross-LA check's).
    """
    ids = [f"TR-{secrets.token_hex(6).upper()}" for _ in to_las]
    # Every key is made (and durable) before any row that needs it, all at once: per child, its
    # two fsyncs and the two transactions below made the cross-LA check the longest serial part
    # of `cme run` (thousands of children in an all-Wales round).
    create_transfer_keys(home.keys, list(zip(to_las, ids, strict=True)))
    incoming: dict[str, list[tuple[str, bytes | None]]] = {}
    for rec, to_la, tid in zip(records.to_dict("records"), to_las, ids, strict=True):
        blob = transfer_cipher(home.keys, to_la, tid).encrypt(tid, seal_fields(rec, RETAINED_HEALTH_FIELDS))
        incoming.setdefault(to_la, []).append((tid, blob))
    # One transaction per store; the receiving LAs' rows commit before the sender's, so a crash in
    # between leaves the children held here, to be sent again by the next check, as before.
    for to_la in sorted(incoming):
        with home.store(to_la).begin() as conn:
            tstore.insert_transfers(conn, to_la, "in", from_la, today, incoming[to_la])
    if ids:
        with home.store(from_la).begin() as conn:
            for to_la in sorted(incoming):
                tstore.insert_transfers(conn, from_la, "out", to_la, today, [(tid, None) for tid, _ in incoming[to_la]])
    for to_la in sorted(set(to_las)):
        mine = [t for t, la in zip(ids, to_las, strict=True) if la == to_la]
        evidence.record(home.settings, to_la, run_id, "transfer_received",
                        {"from": from_la, "transfers": len(mine), "transfer_ids": mine})
        evidence.checkpoint(home.settings, home.keys, to_la)
    if ids:
        evidence.record(home.settings, from_la, run_id, "transfer_sent",
                        {"to": dict(sorted(Counter(to_las).items())), "transfer_ids": ids})
    return ids


def listed(home: Home, la_code: str) -> list[Transfer]:
    """Every transfer of the LA, both directions, oldest first."""
    with home.store(la_code).connect() as conn:
        return [Transfer(*row) for row in tstore.select_transfers(conn, la_code)]


def open_incoming(home: Home, la_code: str, transfer_id: str) -> dict[str, Any]:
    """The record of a transfer this LA received and has not yet acknowledged (for its officer).

    Raises:
        UsageError: no such unacknowledged incoming transfer.
    """
    with home.store(la_code).connect() as conn:
        blob = tstore.waiting_record(conn, la_code, transfer_id)
    if blob is None:
        raise UsageError(f"{transfer_id} is not a transfer to LA {la_code} waiting for acknowledgement")
    return open_fields(transfer_cipher(home.keys, la_code, transfer_id).decrypt(transfer_id, blob),
                       RETAINED_HEALTH_FIELDS)


def acknowledge(home: Home, la_code: str, transfer_ids: list[str], today: dt.date) -> int:
    """The receiving LA acknowledges transfers: record deleted, key destroyed, both sides recorded.

    Args:
        home: the services.
        la_code: the receiving LA.
        transfer_ids: its incoming transfers to acknowledge (all must be waiting, or none is done).
        today: the day acknowledged.

    Raises:
        UsageError: an id that is not an incoming transfer of this LA waiting for acknowledgement.
    """
    waiting = {x.transfer_id: x for x in listed(home, la_code) if x.direction == "in" and x.acknowledged_on is None}
    for i, tid in enumerate(transfer_ids, start=1):
        if tid not in waiting:
            raise UsageError(f"transfer {i}: not a transfer to LA {la_code} waiting for acknowledgement")
    with home.store(la_code).begin() as conn:
        for tid in transfer_ids:
            tstore.mark_acknowledged(conn, la_code, tid, today)
    for tid in transfer_ids:
        destroy_transfer_key(home.keys, la_code, tid)  # a copy of the store's pages is noise from now on
    run_id = f"{evidence.TRANSFER_RUN_PREFIX}{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}"
    senders = sorted({waiting[tid].other_la for tid in transfer_ids})
    for sender in senders:
        theirs = [tid for tid in transfer_ids if waiting[tid].other_la == sender]
        with home.store(sender).begin() as conn:
            for tid in theirs:
                tstore.mark_acknowledged(conn, sender, tid, today)
        evidence.record(home.settings, sender, run_id, "transfer_acknowledged",
                        {"by": la_code, "transfers": len(theirs), "transfer_ids": theirs})
        evidence.checkpoint(home.settings, home.keys, sender)
    evidence.record(home.settings, la_code, run_id, "transfer_acknowledged",
                    {"from": senders, "transfers": len(transfer_ids), "transfer_ids": list(transfer_ids)})
    evidence.checkpoint(home.settings, home.keys, la_code)
    return len(transfer_ids)
