"""Retained children: the ``retained`` and ``retained_keys`` tables and retained-key rotation.

Retained health fields are sealed under a versioned retained-data key. Rotation re-seals every
row under version n+1 and only then destroys older versions, so a crash at any point leaves
every row readable, and a rerun finishes the job. Rotation is also how deletion becomes real on
PostgreSQL: a purged row's ciphertext may survive in heap pages and WAL, but not its key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cme_pipeline.crypto.envelope import (
    RecordCipher,
    create_retained_key,
    destroy_retained_key,
    retained_cipher,
)
from cme_pipeline.crypto.keystore import KeyStore
from cme_pipeline.store import staging
from cme_pipeline.store.staging import utc_now
from cme_pipeline.store.tables import retained, retained_keys, review_decisions

_CHUNK = 5_000


def live_versions(conn: Connection, la_code: str) -> list[int]:
    """Retained-key versions not yet marked destroyed, ascending."""
    rows = conn.execute(
        sa.select(retained_keys.c.version)
        .where(retained_keys.c.la_code == la_code, retained_keys.c.destroyed_at.is_(None))
        .order_by(retained_keys.c.version)
    )
    return [int(r[0]) for r in rows]


def _new_version(engine: Engine, keys: KeyStore, la_code: str) -> int:
    with engine.begin() as conn:
        top = conn.execute(
            sa.select(sa.func.max(retained_keys.c.version)).where(retained_keys.c.la_code == la_code)
        ).scalar_one()
        version = int(top or 0) + 1
        conn.execute(sa.insert(retained_keys).values(la_code=la_code, version=version, created_at=utc_now(),
                                                     shred_due=False))
    # The row is committed first: a crash before the key exists is repaired by the next call,
    # and no row can be sealed under a version until its key exists.
    create_retained_key(keys, la_code, version)
    return version


def current_version(engine: Engine, keys: KeyStore, la_code: str) -> int:
    """The retained-key version new rows are sealed under (created on first use).

    Args:
        engine: the LA store.
        keys: the key store.
        la_code: the LA's ONS code.
    """
    with engine.connect() as conn:
        versions = live_versions(conn, la_code)
    if not versions:
        return _new_version(engine, keys, la_code)
    create_retained_key(keys, la_code, versions[-1])  # idempotent; repairs a crash after the row
    return versions[-1]


class CipherCache:
    """Retained ciphers per (key version, delivery), built once each."""

    def __init__(self, keys: KeyStore, la_code: str) -> None:
        self._keys = keys
        self._la_code = la_code
        self._ciphers: dict[tuple[int, str], RecordCipher] = {}

    def get(self, version: int, delivery_id: str) -> RecordCipher:
        """The cipher of one delivery's retained rows under one key version."""
        key = (version, delivery_id)
        if key not in self._ciphers:
            self._ciphers[key] = retained_cipher(self._keys, self._la_code, version, delivery_id)
        return self._ciphers[key]


def insert_retained(conn: Connection, la_code: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert sealed retained rows; return how many.

    Args:
        conn: an open connection (inside the caller's transaction).
        la_code: the LA's ONS code.
        rows: dicts of ``retained`` columns without ``la_code``.
    """
    return _insert(conn, retained, la_code, rows)


def _insert(conn: Connection, table: sa.Table, la_code: str, rows: Iterable[Mapping[str, Any]]) -> int:
    batch = [{"la_code": la_code, **row} for row in rows]
    for start in range(0, len(batch), _CHUNK):
        conn.execute(sa.insert(table), batch[start : start + _CHUNK])
    return len(batch)


def select_retained(
    conn: Connection, la_code: str, *, live_on: dt.date, run_id: str | None = None,
    delivery_id: str | None = None, outcome: str | None = None, other_than: str | None = None,
) -> list[dict[str, Any]]:
    """Retained rows (sealed) of the LA still within their retention on ``live_on``, filtered,
    ordered by delivery and record id.

    A row whose expiry has come is gone for every reader on that day, whether or not the purge
    has run yet: retention cannot fail open because a scheduled job was paused. ``other_than``
    leaves out one delivery's rows.
    """
    query = sa.select(retained).where(retained.c.la_code == la_code, retained.c.retention_expiry > live_on)
    if run_id is not None:
        query = query.where(retained.c.run_id == run_id)
    if delivery_id is not None:
        query = query.where(retained.c.delivery_id == delivery_id)
    if outcome is not None:
        query = query.where(retained.c.outcome == outcome)
    if other_than is not None:
        query = query.where(retained.c.delivery_id != other_than)
    query = query.order_by(retained.c.delivery_id, retained.c.health_record_id)
    return [dict(r) for r in conn.execute(query).mappings()]


def delete_retained(
    conn: Connection, la_code: str, *, delivery_id: str | None = None, expiring_by: dt.date | None = None,
) -> dict[str, int]:
    """Delete retained rows (of one delivery, or expiring by a date); return counts by outcome.

    The deletion is recorded, in the same transaction, as owing a key rotation
    (``owe_rotation``): the rows' ciphertext may linger in database pages until their key goes.

    Args:
        conn: an open connection (inside the caller's transaction).
        la_code: the LA's ONS code.
        delivery_id: only rows retained from this delivery.
        expiring_by: only rows whose ``retention_expiry`` is on or before this date.
    """
    where = [retained.c.la_code == la_code]
    if delivery_id is not None:
        where.append(retained.c.delivery_id == delivery_id)
    if expiring_by is not None:
        where.append(retained.c.retention_expiry <= expiring_by)
    counts = conn.execute(
        sa.select(retained.c.outcome, sa.func.count()).where(*where).group_by(retained.c.outcome)
    ).all()
    conn.execute(sa.delete(retained).where(*where))
    if counts:
        owe_rotation(conn, la_code)
    return {str(outcome): int(n) for outcome, n in counts}


def awaiting_review(conn: Connection, la_code: str, live_on: dt.date) -> dict[str, tuple[str, str]]:
    """Review ids of `possible` rows awaiting a decision on ``live_on`` (not yet expired)
    -> ``(delivery_id, health_record_id)``."""
    rows = conn.execute(
        sa.select(retained.c.review_id, retained.c.delivery_id, retained.c.health_record_id).where(
            retained.c.la_code == la_code, retained.c.outcome == "possible", retained.c.review_id.is_not(None),
            retained.c.retention_expiry > live_on)
    )
    return {str(r.review_id): (str(r.delivery_id), str(r.health_record_id)) for r in rows}


def reject_possible(conn: Connection, la_code: str, review_ids: Collection[str], retention_expiry: dt.date) -> None:
    """Make reviewed `possible` rows `unmatched`, kept until ``retention_expiry``; clear their review id.

    Args:
        conn: an open connection (inside the caller's transaction).
        la_code: the LA's ONS code.
        review_ids: the rows the reviewer said are not a match.
        retention_expiry: the normal retention date counted from the decision.
    """
    ids = list(review_ids)
    for chunk in (ids[start : start + _CHUNK] for start in range(0, len(ids), _CHUNK)):
        conn.execute(
            sa.update(retained)
            .where(retained.c.la_code == la_code, retained.c.review_id.in_(chunk))
            .values(outcome="unmatched", retention_expiry=retention_expiry, review_id=None)
        )


def record_decisions(conn: Connection, la_code: str, decisions: Iterable[Mapping[str, Any]]) -> None:
    """Keep the reviewer's decisions (review id, delivery, record id, decision, time; nothing personal).

    Args:
        conn: an open connection (inside the caller's transaction).
        la_code: the LA's ONS code.
        decisions: dicts of ``review_decisions`` columns without ``la_code``.
    """
    _insert(conn, review_decisions, la_code, decisions)


def owe_rotation(conn: Connection, la_code: str) -> None:
    """Record, in the caller's deleting transaction, that the live key versions must be shredded.

    Args:
        conn: the open connection of the transaction that deleted retained rows.
        la_code: the LA's ONS code.
    """
    conn.execute(
        sa.update(retained_keys)
        .where(retained_keys.c.la_code == la_code, retained_keys.c.destroyed_at.is_(None))
        .values(shred_due=True)
    )


def finish_shredding(engine: Engine, keys: KeyStore, la_code: str) -> int | None:
    """Rotate if a deletion is owed a rotation or an earlier rotation died; else do nothing.

    After a rotation the re-sealed rows' old ciphertext is pushed out of the write-ahead log
    (``staging.release_deleted_space``), as after any deletion.

    Args:
        engine: the LA store.
        keys: the key store.
        la_code: the LA's ONS code.

    Returns:
        The new key version, or None when no rotation was needed.
    """
    with engine.connect() as conn:
        live = conn.execute(
            sa.select(retained_keys.c.version, retained_keys.c.shred_due)
            .where(retained_keys.c.la_code == la_code, retained_keys.c.destroyed_at.is_(None))
        ).all()
    if len(live) > 1 or any(due for _v, due in live):
        version = rotate(engine, keys, la_code)
        staging.release_deleted_space(engine)
        return version
    return None


def delete_retained_keys(conn: Connection, la_code: str, pairs: Collection[tuple[str, str]]) -> int:
    """Delete retained rows by ``(delivery_id, health_record_id)``; return how many."""
    if not pairs:
        return 0
    owe_rotation(conn, la_code)
    delete = sa.delete(retained).where(  # one statement for many rows (SQLite and psycopg sum rowcount)
        retained.c.la_code == la_code, retained.c.delivery_id == sa.bindparam("b_delivery"),
        retained.c.health_record_id == sa.bindparam("b_record"),
    )
    rows = [{"b_delivery": d, "b_record": r} for d, r in pairs]
    return sum(int(conn.execute(delete, rows[start : start + _CHUNK]).rowcount) for start in range(0, len(rows), _CHUNK))


def rotate(engine: Engine, keys: KeyStore, la_code: str) -> int:
    """Re-seal every retained row under a new key version, then destroy older versions.

    Crash-safe and idempotent: when more than one version is live (an earlier rotation died),
    the newest is the target and the rotation is finished rather than started again.

    Args:
        engine: the LA store.
        keys: the key store.
        la_code: the LA's ONS code.

    Returns:
        The version every retained row is now sealed under.
    """
    with engine.connect() as conn:
        live = conn.execute(
            sa.select(retained_keys.c.version, retained_keys.c.shred_due)
            .where(retained_keys.c.la_code == la_code, retained_keys.c.destroyed_at.is_(None))
            .order_by(retained_keys.c.version)
        ).all()
    # Finish a rotation that died (several live versions) unless its target itself is owed one.
    resume = len(live) > 1 and not live[-1][1]
    target = int(live[-1][0]) if resume else _new_version(engine, keys, la_code)
    create_retained_key(keys, la_code, target)
    ciphers = CipherCache(keys, la_code)
    with engine.begin() as conn:
        old = conn.execute(
            sa.select(retained.c.delivery_id, retained.c.health_record_id, retained.c.key_version, retained.c.ciphertext)
            .where(retained.c.la_code == la_code, retained.c.key_version != target)
        ).all()
        resealed = [
            {"b_delivery": delivery_id, "b_record": record_id,
             "b_sealed": ciphers.get(target, delivery_id).encrypt(
                 record_id, ciphers.get(int(version), delivery_id).decrypt(record_id, bytes(blob)))}
            for delivery_id, record_id, version, blob in old
        ]
        update = (  # one statement executed for many rows: a round trip per row cost seconds per LA
            sa.update(retained)
            .where(retained.c.la_code == la_code, retained.c.delivery_id == sa.bindparam("b_delivery"),
                   retained.c.health_record_id == sa.bindparam("b_record"))
            .values(key_version=target, ciphertext=sa.bindparam("b_sealed"))
        )
        for start in range(0, len(resealed), _CHUNK):
            conn.execute(update, resealed[start : start + _CHUNK])
        del resealed
    # Only after the re-sealed rows are committed may an old key go.
    with engine.connect() as conn:
        stale = [v for v in live_versions(conn, la_code) if v < target]
    for version in stale:
        destroy_retained_key(keys, la_code, version)
        with engine.begin() as conn:
            conn.execute(
                sa.update(retained_keys)
                .where(retained_keys.c.la_code == la_code, retained_keys.c.version == version)
                .values(destroyed_at=utc_now())
            )
    return target
