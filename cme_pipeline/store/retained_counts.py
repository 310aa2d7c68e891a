"""Counts of the retained children, for the analyst's page: the database counts, no row is read.

Nothing here selects a sealed column or a record id: the queries group by outcome and expiry
date and return numbers, so a caller cannot show a child's data even by mistake.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cme_pipeline.store.tables import retained


@dataclass(frozen=True)
class RetainedCounts:
    """What the LA holds on a day: counts by outcome, review queue, expiries by date."""

    by_outcome: dict[str, int] = field(default_factory=dict)  # live rows (expiry after the day)
    awaiting_review: int = 0  # `possible` rows with a review id: the clerical review queue
    by_expiry: dict[dt.date, int] = field(default_factory=dict)  # live rows per retention expiry date
    past_expiry: int = 0  # rows whose retention has ended but the purge has not yet deleted

    @property
    def held(self) -> int:
        """Children held (within their retention) on the day."""
        return sum(self.by_outcome.values())


def retained_counts(conn: Connection, la_code: str, live_on: dt.date) -> RetainedCounts:
    """Count the LA's retained rows on ``live_on``.

    Args:
        conn: an open connection to the LA store.
        la_code: the LA's ONS code.
        live_on: the day to judge retention by (a row expiring on it is past its retention).
    """
    live = (retained.c.la_code == la_code, retained.c.retention_expiry > live_on)
    by_outcome = conn.execute(
        sa.select(retained.c.outcome, sa.func.count()).where(*live).group_by(retained.c.outcome)
    ).all()
    queue = conn.execute(
        sa.select(sa.func.count()).where(*live, retained.c.outcome == "possible", retained.c.review_id.is_not(None))
    ).scalar_one()
    by_expiry = conn.execute(
        sa.select(retained.c.retention_expiry, sa.func.count()).where(*live).group_by(retained.c.retention_expiry)
    ).all()
    past = conn.execute(
        sa.select(sa.func.count()).where(retained.c.la_code == la_code, retained.c.retention_expiry <= live_on)
    ).scalar_one()
    return RetainedCounts(
        by_outcome={str(o): int(n) for o, n in sorted(by_outcome)},
        awaiting_review=int(queue),
        by_expiry={_date(d): int(n) for d, n in sorted(by_expiry)},
        past_expiry=int(past),
    )


def _date(value: object) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
