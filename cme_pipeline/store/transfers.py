"""The ``transfers`` table: children transferred between LAs (ids, LA codes, dates; the receiving
side's sealed record until acknowledged)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cme_pipeline.store.tables import transfers

TransferRow = tuple[str, str, str, dt.date, dt.date | None]


def insert_transfers(conn: Connection, la_code: str, direction: str, other_la: str, sent_on: dt.date,
                     sealed: list[tuple[str, bytes | None]]) -> None:
    """Add one side of several transfers with one other LA: ``(transfer_id, sealed record or None)``."""
    if sealed:
        conn.execute(sa.insert(transfers), [
            {"la_code": la_code, "transfer_id": tid, "direction": direction, "other_la": other_la,
             "sent_on": sent_on, "ciphertext": blob} for tid, blob in sealed])


def select_transfers(conn: Connection, la_code: str) -> list[TransferRow]:
    """Every transfer of the LA as (id, direction, other LA, sent on, acknowledged on), oldest first."""
    t = transfers
    rows = conn.execute(sa.select(t.c.transfer_id, t.c.direction, t.c.other_la, t.c.sent_on, t.c.acknowledged_on)
                        .where(t.c.la_code == la_code).order_by(t.c.sent_on, t.c.transfer_id)).all()
    return [(str(i), str(d), str(o), s, a) for i, d, o, s, a in rows]


def waiting_record(conn: Connection, la_code: str, transfer_id: str) -> bytes | None:
    """The sealed record of an incoming transfer not yet acknowledged (None: no such transfer)."""
    t = transfers
    blob = conn.execute(sa.select(t.c.ciphertext).where(
        t.c.la_code == la_code, t.c.transfer_id == transfer_id, t.c.direction == "in",
        t.c.acknowledged_on.is_(None))).scalar_one_or_none()
    return None if blob is None else bytes(blob)


def mark_acknowledged(conn: Connection, la_code: str, transfer_id: str, on: dt.date) -> None:
    """Mark one side of a transfer acknowledged, dropping any sealed record it held."""
    t = transfers
    conn.execute(sa.update(t).where(t.c.la_code == la_code, t.c.transfer_id == transfer_id)
                 .values(acknowledged_on=on, ciphertext=None))
