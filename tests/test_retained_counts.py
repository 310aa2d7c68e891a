"""The analyst page's count queries agree with the retained children as decrypted, on any day."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from fixtures_minimise import MIN_DELIVERY, MIN_LA, MIN_RUN, MIN_TODAY, MatchedDelivery

from cme_pipeline.config import Settings
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise as m
from cme_pipeline.store.retained_counts import retained_counts


def test_counts_match_the_decrypted_rows_on_any_day(staged_home: Settings, matched_delivery: MatchedDelivery) -> None:
    home = open_home(staged_home)
    m.minimise(home, MIN_LA, MIN_DELIVERY, MIN_RUN, matched_delivery.outcomes, today=MIN_TODAY)
    held = m.read_retained(home, MIN_LA, today=MIN_TODAY)
    with home.store(MIN_LA).connect() as conn:
        counts = retained_counts(conn, MIN_LA, MIN_TODAY)
    assert counts.by_outcome == dict(Counter(held["outcome"]))
    assert counts.held == len(held) > 0
    assert counts.awaiting_review == int(((held["outcome"] == "possible") & held["review_id"].notna()).sum()) > 0
    assert counts.by_expiry == dict(Counter(held["retention_expiry"]))
    assert counts.past_expiry == 0
    # On the day the first retention ends, those rows are past it (and no longer held) until purged.
    first = min(counts.by_expiry)
    with home.store(MIN_LA).connect() as conn:
        later = retained_counts(conn, MIN_LA, first)
        other = retained_counts(conn, "W06000001", MIN_TODAY)
    assert later.past_expiry == counts.by_expiry[first] and later.held == counts.held - counts.by_expiry[first]
    assert other.held == other.past_expiry == other.awaiting_review == 0
    assert all(isinstance(d, dt.date) for d in counts.by_expiry)
