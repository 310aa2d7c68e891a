"""Retention cannot fail open: an expired retained or review row is invisible to every read on
its expiry day, purged or not, and every run purges expired rows before it does anything else."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from fixtures_minimise import MIN_DELIVERY, MIN_LA, MIN_RUN, MatchedDelivery

from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.errors import UsageError
from cme_pipeline.evidence.ledger import read_entries
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise as m
from cme_pipeline.la import review
from cme_pipeline.pipeline import steps
from cme_pipeline.store import retained as rstore

LONG_AGO = dt.date.today() - dt.timedelta(days=120)  # past the 90-day retention and the 14-day review


@pytest.fixture
def expired_home(staged_home: Settings, matched_delivery: MatchedDelivery) -> Settings:
    """A home whose every retained row (unmatched and possible) was made 120 days ago."""
    m.minimise(open_home(staged_home), MIN_LA, MIN_DELIVERY, MIN_RUN, matched_delivery.outcomes, today=LONG_AGO)
    return staged_home


def _stored_rows(settings: Settings) -> int:
    with open_home(settings).store(MIN_LA).connect() as conn:
        return len(rstore.select_retained(conn, MIN_LA, live_on=dt.date.min))


def test_expired_rows_are_invisible_to_every_read_before_any_purge(
    expired_home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    home = open_home(expired_home)
    assert _stored_rows(expired_home) > 0  # still in the table: the purge has not run
    assert m.list_retained(home, MIN_LA).empty
    assert m.read_retained(home, MIN_LA, outcome="possible").empty
    assert len(m.list_retained(home, MIN_LA, today=LONG_AGO)) == _stored_rows(expired_home)  # as it was then
    assert main(["--home", str(expired_home.home), "retained", "list", "--la", MIN_LA]) == 0
    assert "no retained children" in capsys.readouterr().out
    assert review.build_pack(home, MIN_LA).empty
    (possible_id,) = m.read_retained(home, MIN_LA, outcome="possible", today=LONG_AGO)["review_id"][:1]
    with pytest.raises(UsageError, match="not a possible match awaiting review"):
        review.apply_decisions(home, MIN_LA, pd.DataFrame({"review_id": [possible_id], "decision": ["no-match"]}),
                               dt.date.today())


def test_every_run_purges_expired_rows_first_with_a_ledger_entry(
    expired_home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CME_HOME", str(expired_home.home))
    stored = _stored_rows(expired_home)
    with pytest.raises(Exception, match="no delivery waiting"):  # nothing to open, but the purge ran
        steps.open_delivery(MIN_LA, "manual__next", {"la_codes": [MIN_LA]})
    assert _stored_rows(expired_home) == 0
    (entry,) = [e for e in read_entries(expired_home, MIN_LA) if e["event"] == "purged"]
    assert entry["run_id"] == "manual__next"
    assert entry["facts"]["purged_retained"] + entry["facts"]["purged_possible"] == stored
