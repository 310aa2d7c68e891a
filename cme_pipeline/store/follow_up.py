"""The officer's follow-up of retained children: notes on children still held, resolutions kept
for the figures (outcome and dates only), and children added to the CME register."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cme_pipeline.store.tables import (
    REGISTER_TABLES,
    deliveries,
    follow_up_notes,
    follow_up_resolutions,
    retained,
)


def live_children(conn: Connection, la_code: str, live_on: dt.date) -> dict[tuple[str, str], dt.date]:
    """``(delivery_id, health_record_id)`` of every child held on ``live_on`` -> the day retained."""
    query = (
        sa.select(retained.c.delivery_id, retained.c.health_record_id, deliveries.c.staged_at)
        .select_from(retained.outerjoin(deliveries, sa.and_(
            deliveries.c.la_code == retained.c.la_code, deliveries.c.delivery_id == retained.c.delivery_id)))
        .where(retained.c.la_code == la_code, retained.c.retention_expiry > live_on)
    )
    out = {}
    for delivery_id, record_id, staged_at in conn.execute(query):
        out[(str(delivery_id), str(record_id))] = staged_at.date() if staged_at is not None else live_on
    return out


def held_rows(conn: Connection, la_code: str, live_on: dt.date) -> list[tuple[str, str, str, dt.date]]:
    """``(delivery_id, health_record_id, outcome, retention_expiry)`` of every child held on
    ``live_on``, soonest expiry first: plain columns only, no ciphertext is read."""
    t = retained
    rows = conn.execute(
        sa.select(t.c.delivery_id, t.c.health_record_id, t.c.outcome, t.c.retention_expiry)
        .where(t.c.la_code == la_code, t.c.retention_expiry > live_on)
        .order_by(t.c.retention_expiry, t.c.delivery_id, t.c.health_record_id)
    )
    return [(str(d), str(r), str(o), e) for d, r, o, e in rows]


def set_notes(conn: Connection, la_code: str, notes: Iterable[tuple[str, str]], outcome: str, on: dt.date) -> None:
    """Record ``outcome`` as the latest note on each ``(delivery_id, health_record_id)``."""
    t = follow_up_notes
    keys = list(dict.fromkeys(notes))
    if not keys:
        return
    # Two statements for all the children, not two per child.
    conn.execute(sa.delete(t).where(t.c.la_code == la_code, t.c.delivery_id == sa.bindparam("b_delivery"),
                                    t.c.health_record_id == sa.bindparam("b_record")),
                 [{"b_delivery": d, "b_record": r} for d, r in keys])
    conn.execute(sa.insert(t), [{"la_code": la_code, "delivery_id": d, "health_record_id": r, "outcome": outcome,
                                 "recorded_on": on} for d, r in keys])


def put_notes(conn: Connection, la_code: str, notes: Mapping[tuple[str, str], tuple[str, dt.date]]) -> None:
    """Write notes as they were: ``(delivery_id, health_record_id)`` -> (outcome, day) (rows with
    no note yet; a record that replaces another takes over its note)."""
    if notes:
        conn.execute(sa.insert(follow_up_notes), [
            {"la_code": la_code, "delivery_id": d, "health_record_id": r, "outcome": outcome, "recorded_on": on}
            for (d, r), (outcome, on) in notes.items()])


def notes_of(conn: Connection, la_code: str) -> dict[tuple[str, str], tuple[str, dt.date]]:
    """Every note on a child still held: ``(delivery_id, health_record_id)`` -> (outcome, day)."""
    t = follow_up_notes
    rows = conn.execute(sa.select(t.c.delivery_id, t.c.health_record_id, t.c.outcome, t.c.recorded_on)
                        .where(t.c.la_code == la_code))
    return {(str(d), str(r)): (str(o), on) for d, r, o, on in rows}


def record_resolutions(conn: Connection, la_code: str, resolved: Iterable[tuple[str, dt.date]], on: dt.date) -> None:
    """Keep one row per resolved child: its outcome, the day it was retained and the day resolved."""
    rows = [{"la_code": la_code, "resolution_id": secrets.token_hex(8), "outcome": outcome,
             "retained_on": retained_on, "resolved_on": on} for outcome, retained_on in resolved]
    if rows:
        conn.execute(sa.insert(follow_up_resolutions), rows)


def resolutions(conn: Connection, la_code: str) -> list[tuple[str, dt.date, dt.date]]:
    """Every resolution of the LA: (outcome, retained on, resolved on)."""
    t = follow_up_resolutions
    rows = conn.execute(sa.select(t.c.outcome, t.c.retained_on, t.c.resolved_on).where(t.c.la_code == la_code))
    return [(str(o), a, b) for o, a, b in rows]


def add_register_records(conn: Connection, la_code: str, source: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append records to one of the LA's registers (the CME register, when a child is added to it)."""
    batch = [{"la_code": la_code, **dict(r)} for r in rows]
    if batch:
        conn.execute(sa.insert(REGISTER_TABLES[source]), batch)
    return len(batch)
