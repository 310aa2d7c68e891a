"""Learning from officers' review decisions (``matching.learn``): the next fit uses them, a pattern
officers keep rejecting goes to follow-up instead of review, and no decision, right or wrong, can
make a match (a missing twin stays unmatched whatever is clicked). The store keeps them per LA, on
PostgreSQL too; ``tests/test_review.py`` covers keeping them at ``cme review apply``."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from fixtures_matching import with_background

from cme_pipeline.matching import agreement_patterns, match_registers
from cme_pipeline.matching.config import LinkConfig
from cme_pipeline.matching.learn import AUDIT_EVERY, CLEAR_AT, audit_sample, learn
from cme_pipeline.matching.model import fit
from cme_pipeline.matching.prepare import prepare
from cme_pipeline.schemas import CANONICAL_PERSON, DECISION_PATTERN
from cme_pipeline.store.db import create_store_engine, create_tables
from cme_pipeline.store.decided_pairs import DecidedPair, load_decided_pairs, record_decided_pairs


def _child(rid: str, forename: str) -> dict[str, str]:
    return {"record_id": rid, "forename": forename, "middle_names": "", "surname": "Tremarchog",
            "dob": dt.date(2016, 6, 1).isoformat(), "sex": "F", "address": "4 Heol y Parc, Cardiff",
            "postcode": "CF14 3NX"}


@pytest.fixture(scope="module")
def missing_twin() -> tuple[pd.DataFrame, dict[str, pd.DataFrame], pd.DataFrame]:
    """Twins Elsa (h0, on no register) and Erin (h1, on the census as g1), in a crowd; and the
    agreement pattern of Elsa's only candidate, her twin's record."""
    health = pd.DataFrame([_child("h0", "Elsa"), _child("h1", "Erin")])[list(CANONICAL_PERSON)]
    register = pd.DataFrame([_child("g1", "Erin")])[list(CANONICAL_PERSON)]
    big_health, big_register = with_background(health, register, n=300)
    pattern = agreement_patterns(health.iloc[[0]], register)
    return big_health, {"school_census": big_register}, pattern


def _decisions(pattern: pd.DataFrame, same: list[bool]) -> pd.DataFrame:
    return pd.DataFrame([pattern.iloc[0].to_dict()] * len(same)).assign(same=same)


def test_a_pattern_is_cleared_only_by_enough_decisions_and_a_wrong_click_delays_it() -> None:
    pattern = pd.DataFrame([dict.fromkeys(DECISION_PATTERN, 1)])
    key = tuple(int(v) for v in pattern.iloc[0])
    needed = round(1 / CLEAR_AT) - 2  # 18 unanimous "not the same"
    assert key not in learn(_decisions(pattern, [False] * (needed - 1))).cleared
    assert key in learn(_decisions(pattern, [False] * needed)).cleared
    # One "same" among them (a wrong click, or a real match) needs 19 more rejections.
    assert key not in learn(_decisions(pattern, [True] + [False] * (needed + 18))).cleared
    assert key in learn(_decisions(pattern, [True] + [False] * (needed + 19))).cleared
    assert learn(None).decisions == 0 and learn(_decisions(pattern, [False] * 3)).decisions == 3
    with pytest.raises(ValueError, match="lack the column"):
        learn(pattern)  # no decision column


def test_the_next_fit_sends_a_pattern_officers_kept_rejecting_to_follow_up(
    missing_twin: tuple[pd.DataFrame, dict[str, pd.DataFrame], pd.DataFrame],
) -> None:
    health, registers, pattern = missing_twin
    before = match_registers(health, registers).set_index("health_record_id")
    assert before.loc["h0", "outcome"] == "possible"  # the twin guard: a person decides
    assert before.loc["h1", "outcome"] == "matched" and before.loc["h1", "register_record_id"] == "g1"

    rejected = _decisions(pattern, [False] * 25)
    model = fit(prepare(health), prepare(registers["school_census"]), LinkConfig(), rejected)
    assert model.learned.decisions == 25 and len(model.learned.cleared) == 1
    after = match_registers(health, registers, decisions=rejected)
    assert after.attrs["cleared_by_decisions"] == 1
    after = after.set_index("health_record_id")
    # Elsa goes to follow-up (a person still sees her) instead of review; nothing else changes.
    assert after.loc["h0", "outcome"] == "unmatched" and after.loc["h0", "register_record_id"] == ""
    pd.testing.assert_frame_equal(after.drop(index="h0"), before.drop(index="h0"))


def test_no_decision_right_or_wrong_matches_a_missing_twin(
    missing_twin: tuple[pd.DataFrame, dict[str, pd.DataFrame], pd.DataFrame],
) -> None:
    health, registers, pattern = missing_twin
    # A run of wrong "same child" clicks on the twin pattern: still never matched.
    wrong_same = match_registers(health, registers, decisions=_decisions(pattern, [True] * 40))
    assert wrong_same.set_index("health_record_id").loc["h0", "outcome"] == "possible"
    # A handful of "not the same" clicks is not enough to clear a pattern either.
    few = match_registers(health, registers, decisions=_decisions(pattern, [False] * 5))
    assert few.set_index("health_record_id").loc["h0", "outcome"] == "possible"
    assert few.attrs["cleared_by_decisions"] == 0


def test_one_cleared_pair_in_twenty_stays_in_review_so_a_cleared_pattern_is_still_decided(
    missing_twin: tuple[pd.DataFrame, dict[str, pd.DataFrame], pd.DataFrame],
) -> None:
    ids = [f"h{i}" for i in range(4000)]
    sample = audit_sample(ids, ["g1"] * len(ids))
    assert abs(sample.mean() - 1 / AUDIT_EVERY) < 0.015  # about one in twenty
    assert (audit_sample(ids, ["g1"] * len(ids)) == sample).all()  # the same pairs on every run
    # The missing twin under an id the sample keeps: her cleared pair stays in review ...
    audited = next(i for i, kept in zip(ids, sample, strict=True) if kept)
    health, registers, pattern = missing_twin
    health = health.assign(record_id=health["record_id"].replace({"h0": audited}))
    rejected = _decisions(pattern, [False] * 25)
    kept = match_registers(health, registers, decisions=rejected)
    assert kept.set_index("health_record_id").loc[audited, "outcome"] == "possible"
    assert kept.attrs["cleared_by_decisions"] == 0
    # ... and officers who find the sample's pairs are the same child bring the pattern back.
    back = _decisions(pattern, [False] * 25 + [True] * 2)
    assert learn(back).cleared == frozenset()


@pytest.mark.postgres
def test_decided_pairs_round_trip_on_postgresql_and_stay_with_their_la(postgres_url: str) -> None:
    engine = create_store_engine(postgres_url)
    create_tables(engine)
    pairs = [DecidedPair("run-1", "school_census", (0, 4, 4, 1, -1, 5), False),
             DecidedPair("run-1", "ehe", (6, 4, 1, 1, -1, 5), True)]
    with engine.begin() as conn:
        assert record_decided_pairs(conn, "W06000015", dt.date(2026, 12, 1), pairs) == 2
        record_decided_pairs(conn, "W06000002", dt.date(2026, 12, 1), pairs[:1])
    cardiff = load_decided_pairs(engine, "W06000015")
    assert sorted(cardiff.values.tolist()) == sorted([*p.levels, p.same] for p in pairs)
    assert learn(cardiff).decisions == 2 and len(load_decided_pairs(engine, "W06000002")) == 1
    engine.dispose()
