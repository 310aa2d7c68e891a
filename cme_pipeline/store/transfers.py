"""The ``transfers`` table: children transferred between LAs (ids, LA codes, dates; the receiving
side's sealed record until acknowledged)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cme_pipeline.store.tables import transfers

TransferRow = tuple[str, str, str, dt.date, dt.date | None]


def insert_transfer(conn: Connection, la_code: str, transfer_id: str, direction: str, other_la: str,
                    sent_on: dt.date, ciphertext: bytes | None = None) -> None:
    """Add one side of a transfer (``out`` without data, ``in`` with the sealed record)."""
    conn.execute(sa.insert(transfers).values(la_code=la_code, transfer_id=transfer_id, direction=direction,
                                             other_la=other_la, sent_on=sent_on, ciphertext=ciphertext))


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
