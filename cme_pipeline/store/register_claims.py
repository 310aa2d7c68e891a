"""Which register records the LA's latest run matched (``register_claims``): ids only."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cme_pipeline.store.tables import register_claims

_CHUNK = 5_000


def replace_claims(conn: Connection, la_code: str, claims: Iterable[tuple[str, str]]) -> int:
    """Replace the LA's claimed register records with ``(register, record_id)`` pairs; return how many.

    Args:
        conn: an open connection (inside the caller's sealing transaction).
        la_code: the LA's ONS code.
        claims: the matched register records of the run being sealed.
    """
    conn.execute(sa.delete(register_claims).where(register_claims.c.la_code == la_code))
    rows = [{"la_code": la_code, "register": r, "record_id": i} for r, i in dict.fromkeys(claims)]
    for start in range(0, len(rows), _CHUNK):
        conn.execute(sa.insert(register_claims), rows[start : start + _CHUNK])
    return len(rows)


def claimed(conn: Connection, la_code: str) -> set[tuple[str, str]]:
    """The LA's claimed ``(register, record_id)`` pairs."""
    rows = conn.execute(sa.select(register_claims.c.register, register_claims.c.record_id)
                        .where(register_claims.c.la_code == la_code))
    return {(str(r), str(i)) for r, i in rows}
