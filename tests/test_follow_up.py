"""The CME officer's follow-up: each finding recorded, every resolved child's record gone beyond
recovery, a child confirmed missing moved to the CME register with only its fields, figures for
the DPO. Played as the officer (through ``cme retained``) and as someone holding a copy of the
store taken before the findings."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from fixtures_minimise import MIN_DELIVERY, MIN_LA, MIN_RUN, MIN_TODAY, MatchedDelivery

from cme_pipeline import evidence
from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.crypto import envelope
from cme_pipeline.errors import KeyUnavailable
from cme_pipeline.evidence import ledger
from cme_pipeline.home import open_home
from cme_pipeline.la import follow_up
from cme_pipeline.la import minimise as m
from cme_pipeline.schemas import register_columns
from cme_pipeline.store import load_register
from cme_pipeline.store.tables import REGISTER_TABLES, retained

OUTCOMES = list(follow_up.OUTCOMES)


@pytest.fixture
def minimised(staged_home: Settings, matched_delivery: MatchedDelivery) -> Settings:
    m.minimise(open_home(staged_home), MIN_LA, MIN_DELIVERY, MIN_RUN, matched_delivery.outcomes, today=MIN_TODAY)
    assert len(m.list_retained(open_home(staged_home), MIN_LA)) >= 2 * len(OUTCOMES)
    return staged_home


def _cli(settings: Settings, *argv: str) -> int:
    return main(["--home", str(settings.home), "retained", *argv])


def _held(settings: Settings) -> pd.DataFrame:
    frame = m.read_retained(open_home(settings), MIN_LA)
    frame["ref"] = [follow_up.ref_of(d, r) for d, r in zip(frame["delivery_id"], frame["health_record_id"], strict=True)]
    return frame


def _files(settings: Settings) -> list[Path]:
    roots = [settings.home, Path(settings.keystore_uri.removeprefix("file:"))]
    return [p for root in roots if root.is_dir() for p in root.rglob("*") if p.is_file()]


def _blobs(settings: Settings) -> dict[str, tuple[int, bytes]]:
    with open_home(settings).store(MIN_LA).connect() as conn:
        rows = conn.execute(sa.select(retained.c.health_record_id, retained.c.key_version, retained.c.ciphertext))
        return {str(r): (int(v), bytes(c)) for r, v, c in rows}


def test_every_outcome_is_applied_and_a_resolved_child_is_beyond_recovery(
    minimised: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held = _held(minimised)
    chosen = held[held["outcome"] == "unmatched"].iloc[: len(OUTCOMES)]
    decisions = dict(zip(chosen["ref"], OUTCOMES, strict=True))
    before = _blobs(minimised)  # what a copy of the store taken now would hold
    path = tmp_path / "findings.csv"
    path.write_text("ref,outcome\n" + "".join(f"{r},{o}\n" for r, o in decisions.items()), encoding="utf-8")
    assert _cli(minimised, "resolve", "--la", MIN_LA, "--decisions", str(path)) == 0
    assert capsys.readouterr().out.strip() == (
        "records deleted: 6; added to the CME register (rest deleted): 1; still under enquiry: 1")

    after = _held(minimised)
    by_ref = chosen.set_index("ref")
    gone = [r for r, o in decisions.items() if o != "under_enquiry"]
    assert not set(gone) & set(after["ref"]) and len(after) == len(held) - len(gone)
    kept_ref = next(r for r, o in decisions.items() if o == "under_enquiry")
    assert kept_ref in set(after["ref"])
    # The store copy: its ciphertext of the resolved children is under a key that is gone.
    keys = open_home(minimised).keys
    for ref in gone:
        version, blob = before[by_ref.loc[ref, "health_record_id"]]
        assert not envelope.retained_key_exists(keys, MIN_LA, version)
        with pytest.raises(KeyUnavailable):
            envelope.retained_cipher(keys, MIN_LA, version, MIN_DELIVERY).decrypt(by_ref.loc[ref, "health_record_id"], blob)
    # No byte of a resolved child's NHS number, GP practice or registration anywhere on the LA side.
    numbers = [str(by_ref.loc[ref, "nhs_number"]) for ref in gone]
    for p in _files(minimised):
        data = p.read_bytes()
        assert not [n for n in numbers if n.encode() in data or n.encode("utf-16-le") in data], p

    # The child added to the CME register: only the register's fields, from the health record.
    cme_ref = next(r for r, o in decisions.items() if o == "added_to_cme")
    child = by_ref.loc[cme_ref]
    register = load_register(open_home(minimised).store(MIN_LA), MIN_LA, "cme")
    added = register[register["record_id"].str.startswith("CME-")]
    assert len(added) == 1
    row = added.iloc[0]
    assert (row.forename, row.surname, row.dob, row.postcode, row.referral_date) == (
        child.forename, child.surname, child.dob, child.postcode, dt.date.today().isoformat())
    assert set(REGISTER_TABLES["cme"].c.keys()) == {"la_code", *register_columns("cme")}  # nowhere for the rest

    # The officer's note, the ledger (codes and counts only), the evidence still verifies.
    assert _cli(minimised, "list", "--la", MIN_LA) == 0
    listing = capsys.readouterr().out
    assert any(line.startswith(kept_ref) and "under_enquiry" in line for line in listing.splitlines())
    entries = [e for e in ledger.read_entries(minimised, MIN_LA) if e["event"] == "follow_up_recorded"]
    assert len(entries) == 1 and entries[0]["run_id"].startswith(evidence.FOLLOW_UP_RUN_PREFIX)
    assert entries[0]["facts"]["outcomes"] == dict.fromkeys(sorted(OUTCOMES), 1)
    assert (entries[0]["facts"]["deleted"], entries[0]["facts"]["added_to_cme_register"]) == (6, 1)
    assert not any(n in json.dumps(entries) for n in numbers)
    report = evidence.verify(minimised, keys, la_codes=[MIN_LA], airflow=False)
    assert report.ok, report.problems


def test_the_figures_count_outcomes_days_and_the_children_still_held(minimised: Settings) -> None:
    held = _held(minimised)
    refs = list(held["ref"])
    staged_on = dt.date.today()  # the fixture stages and minimises today
    later = staged_on + dt.timedelta(days=35)  # 25 school days later
    follow_up.resolve(open_home(minimised), MIN_LA, [(refs[0], "school_wales"), (refs[1], "moved_out_of_wales")], staged_on)
    follow_up.resolve(open_home(minimised), MIN_LA, [(refs[2], "school_wales"), (refs[3], "under_enquiry")], later)
    f = follow_up.figures(open_home(minimised), MIN_LA, later)
    assert f.resolved_by_outcome == {"moved_out_of_wales": 1, "school_wales": 2}
    assert f.resolved == 3 and f.within_initial_check == 2
    assert f.median_school_days == 0 and follow_up.school_days(staged_on, later) == 25
    still = len(m.read_retained(open_home(minimised), MIN_LA, today=later))  # possible ones have expired by then
    assert f.held_by_age == {"up to 20 school days": 0, "21 to 40 school days": still, "more than 40 school days": 0}
    assert f.under_enquiry == 1


def test_the_dpo_report_shows_the_follow_up_figures(minimised: Settings) -> None:
    from fixtures_evidence import write_run

    from cme_pipeline.evidence.report import render_report

    refs = list(_held(minimised)["ref"])
    follow_up.resolve(open_home(minimised), MIN_LA, [(refs[0], "school_england"), (refs[1], "not_resident"),
                                                    (refs[2], "under_enquiry")], dt.date.today())
    write_run(minimised, "manual__report", MIN_LA, report=False)
    summary = follow_up.report_summary(open_home(minimised), MIN_LA, dt.date.today())
    html = render_report(minimised, open_home(minimised).keys, MIN_LA, "manual__report", summary).read_text()
    assert 'data-figure="follow_up_resolved">2<' in html
    assert 'data-figure="follow_up:found at a school in England">1<' in html
    assert 'data-figure="follow_up:GP registration out of date / child not resident">1<' in html
    assert 'data-figure="follow_up_within_initial_check">2 of 2<' in html
    assert f'data-figure="follow_up_held">{len(refs) - 2}<' in html
    assert 'data-figure="follow_up_under_enquiry">1<' in html


@pytest.mark.parametrize(("rows", "message"), [
    ("{0},school_wales\n{1},at_the_park\n", "decision 2: outcome must be one of"),
    ("{0},school_wales\nD1/r999999,school_wales\n", "decision 2: ref is not a child currently held"),
    ("{0},school_wales\n{0},moved_out_of_wales\n", "decision 2: ref repeats an earlier decision"),
])
def test_a_bad_decision_applies_none(
    minimised: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: str, message: str
) -> None:
    refs = list(_held(minimised)["ref"])
    path = tmp_path / "findings.csv"
    path.write_text("ref,outcome\n" + rows.format(refs[0], refs[1]), encoding="utf-8")
    before = _blobs(minimised)
    assert _cli(minimised, "resolve", "--la", MIN_LA, "--decisions", str(path)) == 2
    err = capsys.readouterr().err
    assert message in err and refs[0] not in err
    assert _blobs(minimised) == before
    assert not [e for e in ledger.read_entries(minimised, MIN_LA) if e["event"] == "follow_up_recorded"]


def test_end_to_end_a_run_then_every_finding_then_evidence_and_the_report(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cme_pipeline.runs import RunPaths, read_state
    from cme_pipeline.simulate.wales import simulate_to_home

    monkeypatch.setenv("CME_HOME", str(settings.home))
    la = "W06000023"  # Powys
    simulate_to_home(settings, [la], children=500, seed=8)
    home = ["--home", str(settings.home)]
    assert main([*home, "run", "--la", la]) == 0
    held = m.read_retained(open_home(settings), la)
    chosen = held[held["outcome"] == "unmatched"].iloc[: len(OUTCOMES)]
    assert len(chosen) == len(OUTCOMES)
    path = tmp_path / "findings.csv"
    path.write_text("ref,outcome\n" + "".join(
        f"{follow_up.ref_of(d, r)},{o}\n" for d, r, o in zip(chosen["delivery_id"], chosen["health_record_id"],
                                                             OUTCOMES, strict=True)), encoding="utf-8")
    assert main([*home, "retained", "resolve", "--la", la, "--decisions", str(path)]) == 0
    resolved = chosen[[o != "under_enquiry" for o in OUTCOMES]]
    # A resolved child's NHS number, or name with date of birth, is nowhere on the LA side in plain.
    needles = [str(n).encode() for n in resolved["nhs_number"]]
    needles += [f"{f},{s}".encode() for f, s in zip(resolved["forename"], resolved["surname"], strict=True)]
    for p in _files(settings):
        if settings.partner_dir in p.parents:  # the simulated partner's side, not the LA's
            continue
        data = p.read_bytes()
        assert not [n for n in needles if n in data], p
    assert main([*home, "evidence", "verify", "--la", la]) == 0
    run_id = next(iter({r for r in held["run_id"]}))
    capsys.readouterr()
    assert main([*home, "evidence", "report", "--la", la, "--run", run_id]) == 0
    report = Path(capsys.readouterr().out.strip()).read_text()
    assert 'data-figure="follow_up_resolved">7<' in report
    assert 'data-figure="follow_up:confirmed missing education, added to the CME register">1<' in report
    assert read_state(RunPaths(settings, la, run_id))["completed"]


def test_a_note_reads_as_words_and_a_possible_match_elsewhere_names_the_la_to_call() -> None:
    assert follow_up.note_label("under_enquiry") == "still under enquiry"
    assert follow_up.note_label("other_la_register") == "on another Welsh LA's register (cross-LA check)"
    assert follow_up.note_label("possibly_on_W06000014") == (
        "possibly on the register of Vale of Glamorgan (W06000014): ask its CME officer first")
    assert follow_up.note_label("possibly_on_E09000001") == (  # not a Welsh code: no name invented
        "possibly on the register of another Welsh LA (E09000001): ask its CME officer first")
