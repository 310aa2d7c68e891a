"""Staging, minimisation, the retained set, discarding, purging and key rotation (SQLite)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

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
from softhsm import use_keystore

from cme_pipeline.config import Settings
from cme_pipeline.crypto import envelope
from cme_pipeline.errors import CiphertextInvalid, CmeError, KeyUnavailable
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise as m
from cme_pipeline.la import retention
from cme_pipeline.matching.convert import health_row_ids
from cme_pipeline.schemas import HEALTH_EXTRACT, RETAINED
from cme_pipeline.store.tables import deliveries, retained, staged

LA, D, RUN, TODAY = MIN_LA, MIN_DELIVERY, MIN_RUN, MIN_TODAY


def _rows(settings: Settings, table: sa.Table) -> list[dict[str, object]]:
    engine = open_home(settings).store(LA)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(table)).mappings()]
    finally:
        engine.dispose()


def test_stage_encrypts_every_row_and_loads_back_identically(staged_home: Settings, matched_delivery: MatchedDelivery) -> None:
    extract = matched_delivery.extract
    rows = _rows(staged_home, staged)
    assert [r["health_record_id"] for r in sorted(rows, key=lambda r: str(r["health_record_id"]))] == health_row_ids(len(extract))
    assert set(rows[0]) == {"la_code", "delivery_id", "health_record_id", "nhs_tag", "ciphertext"}
    nhs = set(extract["nhs_number"])
    assert not any(r["nhs_tag"] in nhs for r in rows)
    blob = b"".join(bytes(r["ciphertext"]) for r in rows)  # type: ignore[arg-type]
    assert not any(n.encode() in blob for n in nhs)
    loaded = m.load_staged(open_home(staged_home), LA, D)
    assert list(loaded.columns) == list(HEALTH_EXTRACT)
    pd.testing.assert_frame_equal(loaded.astype(object), extract.astype(object), check_dtype=False)
    assert m.staged_count(open_home(staged_home), LA, D) == len(extract)


def test_stage_again_is_a_no_op(staged_home: Settings, matched_delivery: MatchedDelivery) -> None:
    before = _rows(staged_home, staged)
    assert m.stage_delivery(open_home(staged_home), LA, D, matched_delivery.extract) == len(matched_delivery.extract)
    assert _rows(staged_home, staged) == before


def test_minimise_keeps_only_possible_and_unmatched_then_shreds(staged_home: Settings, matched_delivery: MatchedDelivery) -> None:
    outcomes = matched_delivery.outcomes
    seen: dict[str, object] = {}

    def verify(frame: pd.DataFrame, matched_numbers: frozenset[str]) -> None:
        seen["columns"] = list(frame.columns)
        seen["n"] = len(frame)
        seen["matched"] = matched_numbers
        assert m.staged_count(open_home(staged_home), LA, D) == len(outcomes)  # nothing committed yet

    result = m.minimise(open_home(staged_home), LA, D, RUN, outcomes, verify_retained=verify, today=TODAY)
    counts = outcomes["outcome"].value_counts()
    assert (result.matched, result.possible, result.unmatched) == (counts["matched"], counts["possible"], counts["unmatched"])
    assert result.received == len(outcomes) == result.matched + result.possible + result.unmatched
    assert result.retained == result.possible + result.unmatched
    assert result.retention_expiry == TODAY + dt.timedelta(days=staged_home.retention_days)
    assert result.data_key_id.startswith(f"la/{LA}/data/{D}#")
    assert dt.datetime.fromisoformat(result.key_destroyed_at).tzinfo is not None
    assert seen["columns"] == list(RETAINED) and seen["n"] == result.retained
    assert seen["matched"] == frozenset(matched_delivery.nhs_numbers("matched"))

    assert m.staged_count(open_home(staged_home), LA, D) == 0
    assert not envelope.data_key_exists(open_home(staged_home).keys, LA, D)
    with pytest.raises(KeyUnavailable, match=f"delivery {D}"):
        m.load_staged(open_home(staged_home), LA, D)

    listed = m.list_retained(open_home(staged_home), LA, RUN)
    assert list(listed.columns) == [*RETAINED, "health_record_id", "delivery_id"]
    assert sorted(listed["health_record_id"]) == sorted(matched_delivery.ids("possible") + matched_delivery.ids("unmatched"))
    assert not set(listed["nhs_number"]) & set(matched_delivery.nhs_numbers("matched"))
    by_id = matched_delivery.extract.set_index(pd.Index(health_row_ids(len(matched_delivery.extract))))
    for row in listed.itertuples():
        assert row.nhs_number == by_id.loc[row.health_record_id, "nhs_number"]
        assert row.surname == by_id.loc[row.health_record_id, "surname"]
    expiry = listed.set_index("outcome")["retention_expiry"]
    assert set(expiry.loc[["possible"]]) == {TODAY + dt.timedelta(days=staged_home.review_days)}
    assert set(expiry.loc[["unmatched"]]) == {TODAY + dt.timedelta(days=staged_home.retention_days)}
    assert m.list_retained(open_home(staged_home), LA, "another-run").empty
    # A rerun after completion returns the same result and changes nothing.
    before = _rows(staged_home, retained)
    assert m.minimise(open_home(staged_home), LA, D, RUN, outcomes, today=TODAY) == result
    assert _rows(staged_home, retained) == before


def test_failed_verification_commits_nothing(staged_home: Settings, matched_delivery: MatchedDelivery) -> None:
    def refuse(frame: pd.DataFrame, matched_numbers: frozenset[str]) -> None:
        raise CmeError("retained suite failed")

    with pytest.raises(CmeError, match="retained suite failed"):
        m.minimise(open_home(staged_home), LA, D, RUN, matched_delivery.outcomes, verify_retained=refuse, today=TODAY)
    assert m.staged_count(open_home(staged_home), LA, D) == len(matched_delivery.extract)
    assert _rows(staged_home, retained) == []
    assert envelope.data_key_exists(open_home(staged_home).keys, LA, D)
    assert _rows(staged_home, deliveries)[0]["phase"] == "staged"


@pytest.mark.parametrize("damage", ["drop_row", "bad_outcome", "duplicate", "foreign_id", "missing_column"])
def test_counts_must_reconcile(staged_home: Settings, matched_delivery: MatchedDelivery, damage: str) -> None:
    outcomes = matched_delivery.outcomes.copy()
    if damage == "drop_row":
        outcomes = outcomes.iloc[1:]
    elif damage == "bad_outcome":
        outcomes.loc[outcomes.index[3], "outcome"] = "maybe"
    elif damage == "duplicate":
        outcomes.loc[outcomes.index[1], "health_record_id"] = outcomes.loc[outcomes.index[0], "health_record_id"]
    elif damage == "foreign_id":
        outcomes.loc[outcomes.index[0], "health_record_id"] = "r999999"
    else:
        outcomes = outcomes.drop(columns=["probability"])
    with pytest.raises(CmeError) as err:
        m.minimise(open_home(staged_home), LA, D, RUN, outcomes, today=TODAY)
    assert "999" not in str(err.value).replace("r999999", "")
    assert m.staged_count(open_home(staged_home), LA, D) == len(matched_delivery.extract)
    assert _rows(staged_home, retained) == []


def test_tampered_staged_row_stops_minimisation(staged_home: Settings, matched_delivery: MatchedDelivery) -> None:
    engine = open_home(staged_home).store(LA)
    with engine.begin() as conn:  # swap two rows' ciphertexts: each is bound to its own record id
        a, b = conn.execute(sa.select(staged.c.health_record_id, staged.c.ciphertext).limit(2)).all()
        conn.execute(sa.update(staged).where(staged.c.health_record_id == a[0]).values(ciphertext=b[1]))
    engine.dispose()
    with pytest.raises(CiphertextInvalid, match=f"record {a[0]}"):
        m.minimise(open_home(staged_home), LA, D, RUN, matched_delivery.outcomes, today=TODAY)
    assert envelope.data_key_exists(open_home(staged_home).keys, LA, D)


def test_discard_removes_everything_and_allows_restaging(staged_home: Settings, matched_delivery: MatchedDelivery) -> None:
    m.minimise(open_home(staged_home), LA, D, RUN, matched_delivery.outcomes, today=TODAY)
    assert len(m.list_retained(open_home(staged_home), LA)) > 0
    m.discard_delivery(open_home(staged_home), LA, D)
    m.discard_delivery(open_home(staged_home), LA, D)  # idempotent
    assert m.list_retained(open_home(staged_home), LA).empty and m.staged_count(open_home(staged_home), LA, D) == 0
    assert m.stage_delivery(open_home(staged_home), LA, D, matched_delivery.extract) == len(matched_delivery.extract)
    again = m.minimise(open_home(staged_home), LA, D, RUN, matched_delivery.outcomes, today=TODAY)
    assert again.retained == len(m.list_retained(open_home(staged_home), LA))
    m.discard_delivery(open_home(staged_home), LA, "D-never-seen")  # unknown delivery: nothing to do


def test_purge_expired_on_and_after_expiry(staged_home: Settings, matched_delivery: MatchedDelivery) -> None:
    result = m.minimise(open_home(staged_home), LA, D, RUN, matched_delivery.outcomes, today=TODAY)
    review_expiry = TODAY + dt.timedelta(days=staged_home.review_days)
    assert retention.purge_expired(open_home(staged_home), LA, review_expiry - dt.timedelta(days=1)) == retention.PurgeResult(0, 0)
    assert retention.purge_expired(open_home(staged_home), LA, review_expiry) == retention.PurgeResult(retained=0, possible=result.possible)
    assert set(m.list_retained(open_home(staged_home), LA)["outcome"]) == {"unmatched"}
    assert retention.purge_expired(open_home(staged_home), LA, result.retention_expiry) == retention.PurgeResult(retained=result.unmatched, possible=0)
    assert m.list_retained(open_home(staged_home), LA).empty
    assert retention.purge_expired(open_home(staged_home), LA, result.retention_expiry) == retention.PurgeResult(0, 0)


def test_rotation_reseals_every_row_and_destroys_old_key(staged_home: Settings, matched_delivery: MatchedDelivery) -> None:
    m.minimise(open_home(staged_home), LA, D, RUN, matched_delivery.outcomes, today=TODAY)
    keys = open_home(staged_home).keys
    before = m.list_retained(open_home(staged_home), LA)
    old_blobs = {r["health_record_id"]: r["ciphertext"] for r in _rows(staged_home, retained)}
    assert m.rotate_retained_key(open_home(staged_home), LA) == 2
    assert not envelope.retained_key_exists(keys, LA, 1) and envelope.retained_key_exists(keys, LA, 2)
    pd.testing.assert_frame_equal(m.list_retained(open_home(staged_home), LA), before)
    rows = _rows(staged_home, retained)
    assert {r["key_version"] for r in rows} == {2}
    assert all(old_blobs[r["health_record_id"]] != r["ciphertext"] for r in rows)
    # The old ciphertexts (as a backup would hold them) are unreadable now.
    some = next(iter(old_blobs.items()))
    with pytest.raises(KeyUnavailable):
        envelope.retained_cipher(keys, LA, 1, D).decrypt(str(some[0]), bytes(some[1]))  # type: ignore[arg-type]


@pytest.mark.postgres
def test_the_same_code_on_postgresql(
    tmp_path: Path, matched_delivery: MatchedDelivery, postgres_url: str, keystore_backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = home_settings(tmp_path / "home", postgres_url, use_keystore(monkeypatch, keystore_backend))
    assert m.stage_delivery(open_home(settings), LA, D, matched_delivery.extract) == len(matched_delivery.extract)
    assert m.stage_delivery(open_home(settings), LA, D, matched_delivery.extract) == len(matched_delivery.extract)
    pd.testing.assert_frame_equal(
        m.load_staged(open_home(settings), LA, D).astype(object), matched_delivery.extract.astype(object), check_dtype=False
    )
    result = m.minimise(open_home(settings), LA, D, RUN, matched_delivery.outcomes, today=TODAY)
    assert result.retained == result.possible + result.unmatched > 0 and m.staged_count(open_home(settings), LA, D) == 0
    assert m.minimise(open_home(settings), LA, D, RUN, matched_delivery.outcomes, today=TODAY) == result
    listed = m.list_retained(open_home(settings), LA, RUN)
    assert len(listed) == result.retained and set(listed["retention_expiry"]) <= {
        result.retention_expiry, TODAY + dt.timedelta(days=settings.review_days)}
    assert m.rotate_retained_key(open_home(settings), LA) == 2
    pd.testing.assert_frame_equal(m.list_retained(open_home(settings), LA, RUN), listed)
    purged = retention.purge_expired(open_home(settings), LA, TODAY + dt.timedelta(days=settings.review_days))
    assert purged == retention.PurgeResult(retained=0, possible=result.possible)
    keys = open_home(settings).keys
    assert [v for v in range(1, 5) if envelope.retained_key_exists(keys, LA, v)] == [3]
    m.discard_delivery(open_home(settings), LA, D)
    assert m.list_retained(open_home(settings), LA).empty


def test_a_child_held_from_an_earlier_delivery_is_held_once_after_a_later_one(
        staged_home: Settings, matched_delivery: MatchedDelivery) -> None:
    # October's delivery retains the unmatched children. By January one of them is at school (on the
    # census), one has left the LA (not on January's extract), and the officer has a note on a
    # third. January's run must leave each child held once: the pupil's October record deleted as
    # a finding, the rest replaced by January's records (the note going with them), the one who
    # left still held from October. A possible match in both keeps its review id: the reviewer's
    # pack from October still applies.
    from cme_pipeline import evidence, matching
    from cme_pipeline.evidence import files
    from cme_pipeline.la import follow_up, review
    from cme_pipeline.store import follow_up as fstore
    from cme_pipeline.store import replace_register

    home = open_home(staged_home)
    m.minimise(home, LA, D, RUN, matched_delivery.outcomes, today=TODAY)
    first = m.read_retained(home, LA)
    unmatched = first[first["outcome"] == "unmatched"]
    pupil, noted, left = (unmatched.iloc[i] for i in range(3))
    in_review = first[first["outcome"] == "possible"].iloc[0]
    with home.store(LA).begin() as conn:
        fstore.set_notes(conn, LA, [(noted["delivery_id"], noted["health_record_id"])], "under_enquiry", TODAY)

    extract = matched_delivery.extract
    child = extract[extract["nhs_number"] == pupil["nhs_number"]].iloc[0]
    census = matched_delivery.registers["school_census"]
    enrolled = census.iloc[[0]].assign(
        record_id="A015JANUARY01", forename=child["forename"], middle_names=child["middle_names"],
        surname=child["surname"], dob=child["dob"], sex=child["sex"], address=child["address_line1"],
        postcode=child["postcode"])
    registers = {**matched_delivery.registers, "school_census": pd.concat([census, enrolled], ignore_index=True)}
    replace_register(home.store(LA), LA, "school_census", registers["school_census"], as_of=TODAY)
    january = extract[extract["nhs_number"] != left["nhs_number"]][list(HEALTH_EXTRACT)].reset_index(drop=True)
    later = "D20270115-W06000015-0000cafe"
    m.stage_delivery(home, LA, later, january)
    outcomes = matching.match_registers(matching.health_to_canonical(january), {
        s: matching.register_to_canonical(f) for s, f in registers.items()})
    outcomes.loc[(january["nhs_number"] == in_review["nhs_number"]).to_numpy(), "outcome"] = "possible"
    m.minimise(home, LA, later, "manual__2027-01-16T09:00:00+00:00", outcomes, today=TODAY)

    after = m.read_retained(home, LA)
    assert after["nhs_number"].is_unique  # nobody held twice
    assert pupil["nhs_number"] not in set(after["nhs_number"])
    held_from = dict(zip(after["nhs_number"], after["delivery_id"], strict=True))
    assert held_from[left["nhs_number"]] == D  # not on January's extract: still held from October
    assert set(held_from) == set(first["nhs_number"]) - {pupil["nhs_number"]}
    assert all(d == later for n, d in held_from.items() if n != left["nhs_number"])
    new_ref = after.loc[after["nhs_number"] == noted["nhs_number"], ["delivery_id", "health_record_id"]].iloc[0]
    with home.store(LA).connect() as conn:
        notes = fstore.notes_of(conn, LA)
    assert {k: v[0] for k, v in notes.items()} == {(later, new_ref["health_record_id"]): "under_enquiry"}
    summary = follow_up.report_summary(home, LA, TODAY)
    assert summary.resolved_by_outcome == {follow_up.LABELS[m.LATER_MATCH_OUTCOME]: 1}
    entries = [json.loads(line) for line in files.ledger_file(staged_home, LA).read_text().splitlines()]
    assert [e["facts"] for e in entries if e["event"] == "earlier_records"] == [
        {"delivery_id": later, "matched_now": 1, "retained_again": len(first) - 2}]
    assert not envelope.retained_key_exists(home.keys, LA, 1)  # the October records' key is gone
    again = after[after["nhs_number"] == in_review["nhs_number"]].iloc[0]
    assert (again["delivery_id"], again["outcome"], again["review_id"]) == (later, "possible", in_review["review_id"])
    decided = review.apply_decisions(home, LA, pd.DataFrame({"review_id": [in_review["review_id"]],
                                                            "decision": ["no-match"]}), TODAY)
    assert decided.rejected == 1
    # The DPO report of January's run shows both counts (the step records "minimised" in a real run).
    counts = {o: int((outcomes["outcome"] == o).sum()) for o in ("matched", "possible", "unmatched")}
    evidence.record(staged_home, LA, "manual__2027-01-16T09:00:00+00:00", "minimised",
                    {"received": len(january), **counts, "retained": counts["possible"] + counts["unmatched"]})
    html = evidence.render_report(staged_home, home.keys, LA, "manual__2027-01-16T09:00:00+00:00").read_text()
    assert 'data-figure="earlier_matched_now">1<' in html
    assert f'data-figure="earlier_retained_again">{len(first) - 2}<' in html


@pytest.mark.parametrize("stop", ["sealed", "shredded"])
def test_a_resumed_minimisation_refuses_outcomes_other_than_the_sealed_ones(
        staged_home: Settings, matched_delivery: MatchedDelivery, monkeypatch: pytest.MonkeyPatch, stop: str) -> None:
    class Stopped(Exception):
        pass

    def halt(point: str) -> None:
        if point == stop:
            raise Stopped(point)

    monkeypatch.setattr(m, "crash_point", halt)
    with pytest.raises(Stopped):
        m.minimise(open_home(staged_home), LA, D, RUN, matched_delivery.outcomes, today=TODAY)
    monkeypatch.setattr(m, "crash_point", lambda point: None)
    other = matched_delivery.outcomes.copy()
    other.loc[other["outcome"] == "matched", "outcome"] = "unmatched"
    with pytest.raises(CmeError, match="was minimised with other counts"):
        m.minimise(open_home(staged_home), LA, D, RUN, other, today=TODAY)
    # the same outcomes resume and finish
    assert m.minimise(open_home(staged_home), LA, D, RUN, matched_delivery.outcomes, today=TODAY).retained == \
        len(matched_delivery.ids("possible")) + len(matched_delivery.ids("unmatched"))
