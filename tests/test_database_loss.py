"""The database goes away in the middle of minimisation's transactions (real PostgreSQL).

Two ways it goes: every session of the database is cut (a failover, a dropped connection), or
the server dies outright and restarts from its WAL (a power cut). Either way the transaction in
flight must vanish whole, nothing may be lost or left unreadable, the delivery's data key must
survive (its data is not yet safely re-encrypted), and running minimisation again must reach
exactly what an undisturbed run reaches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from fixtures_minimise import (
    MIN_DELIVERY,
    MIN_LA,
    MIN_RUN,
    MIN_TODAY,
    MatchedDelivery,
    home_settings,
)
from postgres_server import PostgresServer
from softhsm import use_keystore

from cme_pipeline.crypto import envelope
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise as m
from cme_pipeline.store import retained as rstore
from cme_pipeline.store import staging as sstore

pytestmark = pytest.mark.postgres

# (module, function, n): the fault strikes right after the n-th call, inside its open transaction.
POINTS = {
    "sealing": (rstore, "insert_retained", 1),  # retained rows written, matched rows not yet gone
    "clearing": (sstore, "delete_staged", 2),  # (1st: matched rows, while sealing) the rest deleted, phase not yet recorded
}


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory, matched_delivery: MatchedDelivery) -> tuple[m.MinimiseResult, pd.DataFrame]:
    settings = home_settings(tmp_path_factory.mktemp("undisturbed") / "home")
    m.stage_delivery(open_home(settings), MIN_LA, MIN_DELIVERY, matched_delivery.extract)
    result = m.minimise(open_home(settings), MIN_LA, MIN_DELIVERY, MIN_RUN, matched_delivery.outcomes, today=MIN_TODAY)
    return result, m.list_retained(open_home(settings), MIN_LA)


def _fault(server: PostgresServer, database: str, how: str) -> Callable[[], None]:
    if how == "sessions cut":
        return lambda: server.terminate_sessions(database)
    return server.crash_and_restart


@pytest.mark.parametrize("how", ["sessions cut", "server crash"])
@pytest.mark.parametrize("point", list(POINTS))
def test_database_lost_mid_transaction_then_rerun_converges(
    tmp_path: Path, matched_delivery: MatchedDelivery, postgres_server: PostgresServer, postgres_url: str,
    undisturbed: tuple[m.MinimiseResult, pd.DataFrame], monkeypatch: pytest.MonkeyPatch, point: str, how: str,
    keystore_backend: str,
) -> None:
    expected, expected_retained = undisturbed
    settings = home_settings(tmp_path / "home", postgres_url, use_keystore(monkeypatch, keystore_backend))
    m.stage_delivery(open_home(settings), MIN_LA, MIN_DELIVERY, matched_delivery.extract)
    database = sa.make_url(postgres_url).database
    assert database
    module, name, nth = POINTS[point]
    real = getattr(module, name)
    calls, struck = [], []

    def then_the_database_goes(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        calls.append(name)
        if len(calls) == nth:
            struck.append(point)
            _fault(postgres_server, database, how)()
        return result

    monkeypatch.setattr(module, name, then_the_database_goes)
    with pytest.raises(sa.exc.DBAPIError):
        m.minimise(open_home(settings), MIN_LA, MIN_DELIVERY, MIN_RUN, matched_delivery.outcomes, today=MIN_TODAY)
    assert struck == [point]
    monkeypatch.undo()

    # The transaction in flight is gone whole; the key is kept while its data may be needed.
    keys = open_home(settings).keys
    assert envelope.data_key_exists(keys, MIN_LA, MIN_DELIVERY)
    if point == "sealing":
        assert m.list_retained(open_home(settings), MIN_LA).empty
        assert m.staged_count(open_home(settings), MIN_LA, MIN_DELIVERY) == len(matched_delivery.extract)
    else:  # the sealing had committed: every retained row is there and readable
        assert len(m.list_retained(open_home(settings), MIN_LA)) == expected.retained
        assert m.staged_count(open_home(settings), MIN_LA, MIN_DELIVERY) == expected.retained

    result = m.minimise(open_home(settings), MIN_LA, MIN_DELIVERY, MIN_RUN, matched_delivery.outcomes, today=MIN_TODAY)
    assert (result.received, result.matched, result.possible, result.unmatched, result.retained,
            result.retention_expiry) == (expected.received, expected.matched, expected.possible,
                                         expected.unmatched, expected.retained, expected.retention_expiry)
    after = m.list_retained(open_home(settings), MIN_LA)
    pd.testing.assert_frame_equal(after, expected_retained, check_dtype=False)
    assert m.staged_count(open_home(settings), MIN_LA, MIN_DELIVERY) == 0
    assert not envelope.data_key_exists(keys, MIN_LA, MIN_DELIVERY)
