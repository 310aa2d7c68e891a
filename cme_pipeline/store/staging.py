"""Staged deliveries: the ``deliveries`` and ``staged`` tables. Rows hold ciphertext and tags only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cme_pipeline.store.tables import deliveries, staged

# Phases of a delivery, in order. Each step of minimisation moves it on inside the transaction
# that does the step's work, so a rerun after a crash resumes at the first step not committed.
STAGED, SEALED, CLEARED, SHREDDED, DISCARDED = "staged", "sealed", "cleared", "shredded", "discarded"
_CHUNK = 5_000


def utc_now() -> dt.datetime:
    """The current time in UTC (timestamps in the store are timezone-aware)."""
    return dt.datetime.now(dt.UTC)


def get_delivery(conn: Connection, la_code: str, delivery_id: str) -> dict[str, Any] | None:
    """The delivery's row as a dict, or None.

    Args:
        conn: an open connection.
        la_code: the LA's ONS code.
        delivery_id: the delivery's id.
    """
    row = conn.execute(
        sa.select(deliveries).where(deliveries.c.la_code == la_code, deliveries.c.delivery_id == delivery_id)
    ).mappings().first()
    return dict(row) if row is not None else None


def put_delivery(conn: Connection, la_code: str, delivery_id: str, **values: Any) -> None:
    """Insert the delivery's row, or replace its values if it exists.

    Args:
        conn: an open connection (inside the caller's transaction).
        la_code: the LA's ONS code.
        delivery_id: the delivery's id.
        **values: column values.
    """
    where = (deliveries.c.la_code == la_code, deliveries.c.delivery_id == delivery_id)
    if conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(*where)).scalar_one():
        conn.execute(sa.update(deliveries).where(*where).values(**values))
    else:
        conn.execute(sa.insert(deliveries).values(la_code=la_code, delivery_id=delivery_id, **values))


def set_delivery(conn: Connection, la_code: str, delivery_id: str, **values: Any) -> None:
    """Update columns of an existing delivery row.

    Args:
        conn: an open connection.
        la_code: the LA's ONS code.
        delivery_id: the delivery's id.
        **values: column values.
    """
    conn.execute(
        sa.update(deliveries)
        .where(deliveries.c.la_code == la_code, deliveries.c.delivery_id == delivery_id)
        .values(**values)
    )


def insert_staged(conn: Connection, la_code: str, delivery_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert sealed staged rows (``health_record_id``, ``nhs_tag``, ``ciphertext``).

    Args:
        conn: an open connection (inside the caller's transaction).
        la_code: the LA's ONS code.
        delivery_id: the delivery's id.
        rows: the sealed rows.
    """
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append({"la_code": la_code, "delivery_id": delivery_id, **row})
        if len(batch) >= _CHUNK:
            conn.execute(sa.insert(staged), batch)
            batch = []
    if batch:
        conn.execute(sa.insert(staged), batch)


def select_staged(conn: Connection, la_code: str, delivery_id: str) -> list[tuple[str, str, bytes]]:
    """``(health_record_id, nhs_tag, ciphertext)`` of the delivery's staged rows, in id order."""
    result = conn.execute(
        sa.select(staged.c.health_record_id, staged.c.nhs_tag, staged.c.ciphertext)
        .where(staged.c.la_code == la_code, staged.c.delivery_id == delivery_id)
        .order_by(staged.c.health_record_id)
    )
    return [(r[0], r[1], bytes(r[2])) for r in result]


def count_staged(conn: Connection, la_code: str, delivery_id: str) -> int:
    """How many staged rows the delivery has."""
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(staged)
            .where(staged.c.la_code == la_code, staged.c.delivery_id == delivery_id)
        ).scalar_one()
    )


def delete_staged(conn: Connection, la_code: str, delivery_id: str, record_ids: Collection[str] | None = None) -> int:
    """Delete the delivery's staged rows (only ``record_ids`` if given); return how many.

    Args:
        conn: an open connection.
        la_code: the LA's ONS code.
        delivery_id: the delivery's id.
        record_ids: the rows to delete; None deletes them all.
    """
    where = [staged.c.la_code == la_code, staged.c.delivery_id == delivery_id]
    if record_ids is None:
        return int(conn.execute(sa.delete(staged).where(*where)).rowcount)
    ids = sorted(record_ids)
    deleted = 0
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        deleted += int(conn.execute(sa.delete(staged).where(*where, staged.c.health_record_id.in_(part))).rowcount)
    return deleted


def release_deleted_space(engine: Engine) -> None:
    """Push deleted rows out of write-ahead logs after a deletion.

    SQLite: ``secure_delete`` has zeroed the freed cells in the database pages; a TRUNCATE
    checkpoint copies them into the main file and empties the ``-wal`` file so no older page
    image survives there (a no-op in rollback-journal mode, whose journal is deleted at commit).
    PostgreSQL keeps old tuples in heap pages and WAL regardless; there only ciphertext was ever
    written, and destroying the key is what deletes.

    Args:
        engine: the LA store.
    """
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.commit()
