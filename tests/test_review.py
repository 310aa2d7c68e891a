"""Clerical review (export, show, apply) and ``cme retained list``, through the real CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from fixtures_minimise import MIN_DELIVERY, MIN_LA, MIN_RUN, MIN_TODAY, MatchedDelivery

from cme_pipeline import evidence
from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.crypto import envelope
from cme_pipeline.errors import UsageError
from cme_pipeline.evidence import ledger
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise as m
from cme_pipeline.la import review
from cme_pipeline.matching import agreement_patterns, health_to_canonical, register_to_canonical
from cme_pipeline.schemas import DECISION_PATTERN, HEALTH_EXTRACT
from cme_pipeline.store.decided_pairs import load_decided_pairs
from cme_pipeline.store.tables import decided_pairs


@pytest.fixture
def reviewable(staged_home: Settings, matched_delivery: MatchedDelivery) -> Settings:
    """A minimised home with at least three `possible` records (three true matches sent to review)."""
    outcomes = matched_delivery.outcomes.copy()
    to_review = outcomes.index[outcomes["outcome"] == "matched"][:3]
    outcomes.loc[to_review, "outcome"] = "possible"
    m.minimise(open_home(staged_home), MIN_LA, MIN_DELIVERY, MIN_RUN, outcomes, today=MIN_TODAY)
    return staged_home


def _cli(settings: Settings, *argv: str) -> int:
    return main(["--home", str(settings.home), *argv])


def _possible(settings: Settings) -> pd.DataFrame:
    every = m.read_retained(open_home(settings), MIN_LA)
    return every[every["outcome"] == "possible"]


def test_export_writes_an_encrypted_pack_that_show_opens(
    reviewable: Settings, matched_delivery: MatchedDelivery, capsys: pytest.CaptureFixture[str]
) -> None:
    possible = _possible(reviewable)
    assert len(possible) >= 3 and possible["review_id"].str.fullmatch(r"RV-[0-9A-F]{10}").all()
    assert _cli(reviewable, "review", "export", "--la", MIN_LA) == 0
    packs = list(reviewable.reports_dir(MIN_LA).glob("review-*.cmereview"))
    assert len(packs) == 1 and f"{len(possible)} possible" in capsys.readouterr().out
    assert packs[0].stat().st_mode & 0o077 == 0
    raw = packs[0].read_bytes()
    for value in [*possible["nhs_number"], *possible["surname"], *possible["dob"]]:
        assert value.encode() not in raw

    assert _cli(reviewable, "review", "show", str(packs[0]), "--la", MIN_LA) == 0
    shown = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), dtype=str, keep_default_na=False)
    assert sorted(shown["review_id"]) == sorted(possible["review_id"])
    assert "nhs_number" not in shown.columns and not any("nhs" in c for c in shown.columns)
    by_id = possible.set_index("review_id")
    for row in shown.itertuples():
        assert row.health_surname == by_id.loc[row.review_id, "surname"]
        assert row.register_surname  # the candidate register record beside it
        assert row.register == by_id.loc[row.review_id, "best_register"]
    weights = [c for c in shown.columns if c.startswith("weight_")]
    assert "weight_total" in weights and len(weights) >= 5
    assert all(float(v) == float(v) for v in shown["weight_total"])  # numbers, not escaped text

    # Another LA's key does not open it, and a flipped byte is caught.
    assert _cli(reviewable, "review", "show", str(packs[0]), "--la", "W06000002") != 0
    assert "altered or sealed for another LA" in capsys.readouterr().err
    damaged = packs[0].with_name("damaged.cmereview")
    damaged.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    assert _cli(reviewable, "review", "show", str(damaged), "--la", MIN_LA) != 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_pack_cells_are_formula_and_html_safe() -> None:
    frame = pd.DataFrame({"review_id": ["RV-1"], "health_surname": ["=HYPERLINK(\"http://x\")"],
                          "register_forename": ["<script>alert(1)</script>"], "health_address": ["@SUM(A1)"],
                          "weight_total": [-3.5]})
    text = review.render_pack(frame, "csv")
    assert "'=HYPERLINK" in text and "'@SUM" in text and ",-3.5" in text
    page = review.render_pack(frame, "html")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert review.escape_formula("+cmd|' /C calc'!A0") == "'+cmd|' /C calc'!A0"
    assert review.escape_formula("-") == "'-" and review.escape_formula("-2+3") == "'-2+3"
    assert review.escape_formula("-0.16") == "-0.16"
    assert review.escape_formula("Jones") == "Jones" and review.escape_formula(-1.0) == -1.0


def test_apply_deletes_confirmed_matches_and_keeps_rejected_as_unmatched(
    reviewable: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    possible = _possible(reviewable).sort_values("review_id")
    ids = list(possible["review_id"])
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(f"review_id,decision\n{ids[0]},match\n{ids[1]}, No-Match \n{ids[2]},match\n")
    before = m.list_retained(open_home(reviewable), MIN_LA)
    assert _cli(reviewable, "review", "apply", str(decisions), "--la", MIN_LA) == 0
    assert capsys.readouterr().out.strip() == ("confirmed matches deleted: 2; rejected, now unmatched: 1; "
                                               "kept for learning (agreement levels only): 3")

    after = m.read_retained(open_home(reviewable), MIN_LA)
    assert len(after) == len(before) - 2
    gone = set(possible.loc[possible["review_id"].isin([ids[0], ids[2]]), "health_record_id"])
    assert not gone & set(after["health_record_id"])
    kept = after[after["health_record_id"] == possible.iloc[1]["health_record_id"]].iloc[0]
    assert kept["outcome"] == "unmatched" and pd.isna(kept["review_id"])
    assert kept["retention_expiry"] == reviewable.retention_expiry(dt.date.today())
    # The confirmed matches' ciphertext is under a destroyed key now (PostgreSQL may keep pages).
    keys = open_home(reviewable).keys
    assert not envelope.retained_key_exists(keys, MIN_LA, 1) and envelope.retained_key_exists(keys, MIN_LA, 2)
    # The decision is in the ledger (counts and the decisions file's hash), checkpointed at once.
    reviewed = [e for e in ledger.read_entries(reviewable, MIN_LA) if e["event"] == "reviewed"]
    assert len(reviewed) == 1 and reviewed[0]["run_id"].startswith(evidence.REVIEW_RUN_PREFIX)
    assert reviewed[0]["facts"]["confirmed_matches_deleted"] == 2
    assert reviewed[0]["facts"]["rejected_now_unmatched"] == 1
    assert reviewed[0]["facts"]["kept_for_learning"] == 3
    assert reviewed[0]["facts"]["decisions_file_sha256"] == hashlib.sha256(decisions.read_bytes()).hexdigest()
    report = evidence.verify(reviewable, open_home(reviewable).keys, la_codes=[MIN_LA], airflow=False)
    # No note but the one saying this LA set up no witness (it never met the partner here).
    assert report.ok and [n for n in report.notes if "no witness key pinned" not in n] == [], report.notes
    # Applying the same file again: those ids are no longer awaiting review; nothing changes.
    assert _cli(reviewable, "review", "apply", str(decisions), "--la", MIN_LA) == UsageError.exit_code
    assert "decisions row 1: review_id is not a possible match awaiting review" in capsys.readouterr().err
    assert len(m.read_retained(open_home(reviewable), MIN_LA)) == len(after)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("review_id,decision\n{0},match\nRV-0000000000,match\n", "decisions row 2: review_id is not"),
        ("review_id,decision\n{0},match\n{1},maybe\n", "decisions row 2: decision must be match or no-match"),
        ("review_id,decision\n{0},match\n{0},no-match\n", "decisions row 2: review_id repeats"),
        ("id,decision\n{0},match\n", "exactly the columns review_id,decision"),
    ],
)
def test_a_bad_row_applies_nothing(
    reviewable: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    ids = sorted(_possible(reviewable)["review_id"])
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(body.format(*ids))
    before = m.read_retained(open_home(reviewable), MIN_LA)
    assert _cli(reviewable, "review", "apply", str(decisions), "--la", MIN_LA) == UsageError.exit_code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    pd.testing.assert_frame_equal(m.read_retained(open_home(reviewable), MIN_LA), before)
    assert envelope.retained_key_exists(open_home(reviewable).keys, MIN_LA, 1)


def test_retained_list_shows_the_officer_every_retained_child(
    reviewable: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    retained = m.list_retained(open_home(reviewable), MIN_LA)
    assert _cli(reviewable, "retained", "list", "--la", MIN_LA) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"{len(retained)} retained"
    assert all(n in out for n in retained["nhs_number"])
    assert _cli(reviewable, "retained", "list", "--la", MIN_LA, "--format", "csv", "--run", MIN_RUN) == 0
    listed = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), dtype=str, keep_default_na=False)
    assert sorted(listed["nhs_number"]) == sorted(retained["nhs_number"])
    assert _cli(reviewable, "retained", "list", "--la", "W06000099") == UsageError.exit_code
    assert _cli(reviewable, "retained", "list", "--la", MIN_LA, "--run", "nope") == 0
    assert capsys.readouterr().out == "no retained children\n"


def test_a_review_is_not_taken_for_a_run_airflow_never_had(settings: Settings) -> None:
    from cme_pipeline.evidence.airflow_history import cross_check

    entries = [{"run_id": f"{evidence.REVIEW_RUN_PREFIX}2026-10-03T10:00:00+00:00", "event": "reviewed"},
               {"run_id": "manual__2026-10-03", "event": "run_completed"}]
    problems = cross_check(settings, [], {MIN_LA: entries})
    assert problems == [f"{MIN_LA} run manual__2026-10-03 in ledger but Airflow has no such run"]


def test_an_old_pack_stops_opening_once_its_children_are_deleted_and_after_the_review_period(
    reviewable: Settings,
) -> None:
    home = open_home(reviewable)
    old_pack, count = review.export_pack(home, MIN_LA)
    assert len(review.read_pack(home, MIN_LA, old_pack)) == count >= 3
    with pytest.raises(UsageError, match="older than the 14-day review period"):
        review.read_pack(home, MIN_LA, old_pack, today=dt.date.today() + dt.timedelta(days=15))
    first = sorted(_possible(reviewable)["review_id"])[0]
    review.apply_decisions(home, MIN_LA, pd.DataFrame({"review_id": [first], "decision": ["match"]}),
                           dt.date.today())  # a confirmed match: deleted, the retained key rotated
    with pytest.raises(UsageError, match="closed: children in it were deleted"):
        review.read_pack(home, MIN_LA, old_pack)
    new_pack, remaining = review.export_pack(home, MIN_LA)
    assert remaining == count - 1 and first not in set(review.read_pack(home, MIN_LA, new_pack)["review_id"])


def test_apply_keeps_each_decided_pair_for_learning_as_levels_only(
    reviewable: Settings, matched_delivery: MatchedDelivery, tmp_path: Path,
) -> None:
    possible = _possible(reviewable).sort_values("review_id")
    # Two of the true matches the fixture sent to review: one confirmed, one (wrongly) rejected.
    true_pairs = set(matched_delivery.ids("matched")[:3])
    ids = list(possible.loc[possible["health_record_id"].isin(true_pairs), "review_id"])
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(f"review_id,decision\n{ids[0]},match\n{ids[1]},no-match\n")
    assert _cli(reviewable, "review", "apply", str(decisions), "--la", MIN_LA) == 0

    engine = open_home(reviewable).store(MIN_LA)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(decided_pairs)).mappings().all()
    assert len(stored) == 2 and {r["la_code"] for r in stored} == {MIN_LA}
    assert set(stored[0]) == {"la_code", "decision_id", "run_id", "decided_on", "register", "same",
                              *(f"level_{c}" for c in DECISION_PATTERN)}
    # Nothing of the decided children or their candidate records: no value, no review id, no row
    # or delivery reference that outlives their deleted data, no NHS number or its tag.
    decided = possible[possible["review_id"].isin(ids[:2])]
    raw = repr([dict(r) for r in stored]).encode()
    secrets_ = [*decided["nhs_number"], *decided["forename"], *decided["surname"], *decided["dob"],
                *decided["postcode"].replace("", pd.NA).dropna(), *decided["review_id"],
                *decided["health_record_id"], *decided["best_register_record_id"], MIN_DELIVERY]
    assert all(str(v).encode() not in raw for v in secrets_ if str(v))
    assert all(v.replace("-", "").encode() not in raw for v in decided["dob"])
    # What the next run learns from: the pairs as the model saw them, and the decisions.
    learned = load_decided_pairs(engine, MIN_LA)
    decided = decided.set_index("review_id").loc[ids[:2]]
    theirs = [matched_delivery.registers[r].set_index("record_id", drop=False).loc[i]
              for r, i in zip(decided["best_register"], decided["best_register_record_id"], strict=True)]
    expected = agreement_patterns(health_to_canonical(decided[list(HEALTH_EXTRACT)]),
                                  register_to_canonical(pd.DataFrame(theirs))).assign(same=[True, False])
    assert sorted(map(tuple, learned.to_numpy().tolist())) == sorted(map(tuple, expected.to_numpy().tolist()))
    assert {r["run_id"] for r in stored} == {MIN_RUN} and {r["decided_on"] for r in stored} == {dt.date.today()}
    assert load_decided_pairs(engine, "W06000002").empty  # another LA learns nothing from these
