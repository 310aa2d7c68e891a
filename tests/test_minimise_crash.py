"""Kill-and-rerun: the process dies at each step of staging, minimisation and key rotation.

A child process runs the real code with a seam replaced so that it calls ``os._exit`` at one
point: after each phase commit of ``minimise``, in the middle of its sealing transaction, and
after each key-store operation (create, destroy). The parent then checks the state the corpse
left (every retained row readable; no data key destroyed before the retained rows were
committed) and reruns: the retained set and the counts must equal an uninterrupted run's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fixtures_minimise import (
    MIN_DELIVERY,
    MIN_LA,
    MIN_RUN,
    MIN_TODAY,
    MatchedDelivery,
    home_settings,
)

from cme_pipeline.config import Settings
from cme_pipeline.crypto import envelope
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise as m
from cme_pipeline.la import retention

KILLED = 9

CHILD = r"""
import datetime as dt, os, sys
import pandas as pd
from cme_pipeline.la import minimise as m
from cme_pipeline.la import retention
from cme_pipeline.config import load_settings
from cme_pipeline.store import retained as rstore, staging as sstore
from cme_pipeline.home import open_home

home, action, point, outcomes_csv = sys.argv[1:5]
# The test's key store (CME_KEYSTORE: a SoftHSM2 token, or unset for file:) is the child's too.
settings = load_settings(home, environ={k: v for k, v in os.environ.items() if k == "CME_KEYSTORE"})
KeyStoreClass = type(open_home(settings).keys)

def die():
    os._exit(9)

if point.startswith("phase:"):
    m.crash_point = lambda p: die() if p == point[6:] else None
elif point.startswith("keyop:"):
    wanted, done = int(point[6:]), [0]
    for name in ("create_secret", "destroy"):
        original = getattr(KeyStoreClass, name)
        def wrapper(self, *a, _original=original):
            result = _original(self, *a)
            done[0] += 1
            if done[0] == wanted:
                die()
            return result
        setattr(KeyStoreClass, name, wrapper)
elif point.startswith("in_tx:"):
    module, fn = point[6:].split(".")
    target = {"rstore": rstore, "sstore": sstore}[module]
    original = getattr(target, fn)
    def killer(*a, **k):
        original(*a, **k)
        die()  # inside the open transaction: nothing of it may survive
    setattr(target, fn, killer)
elif point.startswith("before:"):
    module, fn = point[7:].split(".")
    setattr({"rstore": rstore, "sstore": sstore}[module], fn, lambda *a, **k: die())

if action == "minimise":
    outcomes = pd.read_csv(outcomes_csv, dtype={"health_record_id": str, "register": str,
                           "register_record_id": str}, keep_default_na=False, na_values={"probability": [""]})
    m.minimise(open_home(settings), sys.argv[5], sys.argv[6], sys.argv[7], outcomes, today=dt.date.fromisoformat(sys.argv[8]))
elif action == "stage":
    extract = pd.read_csv(outcomes_csv, dtype=str, keep_default_na=False)
    m.stage_delivery(open_home(settings), sys.argv[5], sys.argv[6], extract)
elif action == "purge":
    retention.purge_expired(open_home(settings), sys.argv[5], dt.date.fromisoformat(sys.argv[8]))
"""


def _child(settings: Settings, action: str, point: str, data: Path, today: str = MIN_TODAY.isoformat()) -> int:
    args = [str(settings.home), action, point, str(data), MIN_LA, MIN_DELIVERY, MIN_RUN, today]
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
    assert done.returncode in (0, KILLED), done.stderr[-2000:]
    return done.returncode


def _summary(settings: Settings) -> tuple[pd.DataFrame, dict[str, int]]:
    retained = m.list_retained(open_home(settings), MIN_LA)  # raises if any retained row is unreadable
    return retained, retained["outcome"].value_counts().to_dict()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, matched_delivery: MatchedDelivery) -> tuple[m.MinimiseResult, pd.DataFrame]:
    """An uninterrupted run: what every killed-and-rerun run must converge to."""
    settings = home_settings(tmp_path_factory.mktemp("reference") / "home")
    m.stage_delivery(open_home(settings), MIN_LA, MIN_DELIVERY, matched_delivery.extract)
    result = m.minimise(open_home(settings), MIN_LA, MIN_DELIVERY, MIN_RUN, matched_delivery.outcomes, today=MIN_TODAY)
    return result, m.list_retained(open_home(settings), MIN_LA)


def _outcomes_file(tmp_path: Path, delivery: MatchedDelivery) -> Path:
    path = tmp_path / "outcomes.csv"  # ids, bands and scores only: no personal value
    delivery.outcomes.to_csv(path, index=False)
    return path


POINTS = [
    "in_tx:rstore.insert_retained",  # mid-seal, retained rows inserted but not committed
    "in_tx:sstore.delete_staged",  # mid-seal, matched rows deleted but not committed
    "phase:sealed",
    "phase:cleared",
    "phase:key_destroyed",  # data key gone, phase not yet recorded
    "phase:shredded",
    "keyop:1",  # first key operation of minimise: the retained key created
    "keyop:2",  # the data key destroyed
]


@pytest.mark.sqlite
@pytest.mark.parametrize("point", POINTS)
def test_kill_during_minimise_then_rerun_converges(
    staged_home: Settings, matched_delivery: MatchedDelivery, reference: tuple[m.MinimiseResult, pd.DataFrame],
    tmp_path: Path, point: str,
) -> None:
    expected, expected_retained = reference
    outcomes = _outcomes_file(tmp_path, matched_delivery)
    assert _child(staged_home, "minimise", point, outcomes) == KILLED, f"{point} was never reached"

    keys = open_home(staged_home).keys
    retained, counts = _summary(staged_home)  # every row left behind is readable
    if not envelope.data_key_exists(keys, MIN_LA, MIN_DELIVERY):
        # The key may go only after the whole retained set was committed.
        assert len(retained) == expected.retained
    else:
        assert len(retained) in (0, expected.retained)  # sealing is all or nothing
        assert m.staged_count(open_home(staged_home), MIN_LA, MIN_DELIVERY) in (
            len(matched_delivery.extract), expected.retained, 0)

    result = m.minimise(open_home(staged_home), MIN_LA, MIN_DELIVERY, MIN_RUN, matched_delivery.outcomes, today=MIN_TODAY)
    assert (result.received, result.matched, result.possible, result.unmatched, result.retained,
            result.retention_expiry) == (expected.received, expected.matched, expected.possible,
                                         expected.unmatched, expected.retained, expected.retention_expiry)
    assert result.key_destroyed_at
    pd.testing.assert_frame_equal(m.list_retained(open_home(staged_home), MIN_LA), expected_retained)
    assert m.staged_count(open_home(staged_home), MIN_LA, MIN_DELIVERY) == 0
    assert not envelope.data_key_exists(keys, MIN_LA, MIN_DELIVERY)
    assert m.minimise(open_home(staged_home), MIN_LA, MIN_DELIVERY, MIN_RUN, matched_delivery.outcomes, today=MIN_TODAY) == result


@pytest.mark.sqlite
@pytest.mark.parametrize("point", ["in_tx:sstore.insert_staged", "keyop:1"])
def test_kill_during_staging_leaves_none_then_rerun_stages_all(
    settings: Settings, matched_delivery: MatchedDelivery, tmp_path: Path, point: str
) -> None:
    # The one key operation of a staging: the delivery's data key (its NHS-tag key is derived).
    extract = tmp_path / "extract.csv"  # synthetic 999-range test data, in the test's own tmp dir
    matched_delivery.extract.to_csv(extract, index=False)
    assert _child(settings, "stage", point, extract) == KILLED
    assert m.staged_count(open_home(settings), MIN_LA, MIN_DELIVERY) == 0
    assert _child(settings, "stage", "none", extract) == 0
    assert m.staged_count(open_home(settings), MIN_LA, MIN_DELIVERY) == len(matched_delivery.extract)
    pd.testing.assert_frame_equal(
        m.load_staged(open_home(settings), MIN_LA, MIN_DELIVERY).astype(object), matched_delivery.extract.astype(object)
    )


@pytest.mark.sqlite
@pytest.mark.parametrize(
    "point",
    ["in_tx:rstore.delete_retained", "before:rstore.finish_shredding", "keyop:1", "before:rstore.destroy_retained_key",
     "keyop:2"],
)
def test_kill_during_purge_and_rotation_keeps_every_row_readable(
    staged_home: Settings, matched_delivery: MatchedDelivery, tmp_path: Path, point: str
) -> None:
    first = m.minimise(open_home(staged_home), MIN_LA, MIN_DELIVERY, MIN_RUN, matched_delivery.outcomes, today=MIN_TODAY)
    review_day = (MIN_TODAY + pd.Timedelta(days=staged_home.review_days)).isoformat()
    # The purge deletes the possible rows, then rotates: keyop 1 = new key, keyop 2 = old key destroyed.
    assert _child(staged_home, "purge", point, tmp_path, today=review_day) == KILLED
    retained, _ = _summary(staged_home)  # readable whatever the point
    assert len(retained) in (first.retained, first.unmatched)
    result = retention.purge_expired(open_home(staged_home), MIN_LA, pd.Timestamp(review_day).date())
    assert result.retained == 0
    retained, counts = _summary(staged_home)
    assert counts == {"unmatched": first.unmatched}
    keys = open_home(staged_home).keys
    live = [v for v in range(1, 5) if envelope.retained_key_exists(keys, MIN_LA, v)]
    # The rotation the deletion owed finished even though the rerun purged nothing new: the
    # key of the purged rows (whose ciphertext PostgreSQL may keep) is gone.
    assert live == [2]
