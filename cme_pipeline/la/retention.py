"""Retention: retained children past their expiry are purged, and the purge made real.

A retained row's ``retention_expiry`` is the date by which it must be gone
(``Settings.retention_expiry``; `possible` rows get the shorter review period), so on that day
it is purged. Deleting a row is not enough on its own: its ciphertext may linger in database
pages, WAL or backups, so the retained key is rotated and the old version destroyed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cme_pipeline.home import Home
from cme_pipeline.store import retained as rstore
from cme_pipeline.store import staging as sstore


@dataclass(frozen=True)
class PurgeResult:
    """Rows purged: ``retained`` unmatched rows, ``possible`` rows past their review expiry."""

    retained: int
    possible: int


def purge_expired(home: Home, la_code: str, today: dt.date) -> PurgeResult:
    """Purge retained rows whose expiry has come: ``retention_expiry <= today``.

    When anything was purged the retained key is rotated, so the purged rows' ciphertext left in
    database pages, WAL or backups has no key any more.

    Args:
        home: the LA's services (store, keys).
        la_code: the LA's ONS code.
        today: the purge date.
    """
    engine = home.store(la_code)
    with engine.begin() as conn:
        purged = rstore.delete_retained(conn, la_code, expiring_by=today)
    sstore.release_deleted_space(engine)
    # Also finishes a rotation owed by an earlier purge that was killed before it rotated.
    rstore.finish_shredding(engine, home.keys, la_code)
    return PurgeResult(retained=purged.get("unmatched", 0), possible=purged.get("possible", 0))
