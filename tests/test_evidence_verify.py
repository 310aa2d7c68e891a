"""Tampering with each kind of evidence is detected with a line saying what and where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_evidence import LA, RunFigures, write_run

from cme_pipeline import evidence as proof
from cme_pipeline.config import Settings
from cme_pipeline.evidence import files
from cme_pipeline.evidence.ledger import entry_hash
from cme_pipeline.home import open_home
from cme_pipeline.runs import run_key

RUN_A = "manual__2026-10-02T09:00:00+00:00"
RUN_B = "manual__2026-10-09T09:00:00+00:00"


def _problems(settings: Settings, run_id: str | None = None) -> list[str]:
    report = proof.verify(settings, open_home(settings).keys, run_id)
    assert report.ok == (not report.problems)
    return report.problems


def _ledger(settings: Settings) -> Path:
    return files.ledger_file(settings, LA)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_untouched_evidence_verifies(two_runs: Settings) -> None:
    report = proof.verify(two_runs, open_home(two_runs).keys)
    assert report.ok, report.problems
    assert (report.las, report.certificates, report.checkpoints) == (1, 2, 2)
    assert report.entries == 22  # 9 per run, and each run binds its certificate and report
    assert "no Airflow history yet" in " ".join(report.notes)


def test_flipped_byte_in_an_entry_is_a_hash_mismatch(two_runs: Settings) -> None:
    lines = _lines(_ledger(two_runs))
    lines[4] = lines[4].replace(b'"received":1000', b'"received":1001')
    _write(_ledger(two_runs), lines)
    assert f"{LA} ledger entry 5: hash mismatch (edited)" in _problems(two_runs)


def test_edited_and_rehashed_entry_breaks_the_chain(two_runs: Settings) -> None:
    lines = _lines(_ledger(two_runs))
    entry = json.loads(lines[4])
    entry["facts"]["retained"] = 0
    entry["hash"] = entry_hash(entry)
    lines[4] = files.canonical(entry)
    _write(_ledger(two_runs), lines)
    problems = _problems(two_runs)
    assert f"{LA} ledger entry 6: previous hash does not match entry 5 (chain rewritten)" in problems
    assert any("certificate" in p and "does not match ledger (retained)" in p for p in problems)


def test_whole_chain_rewritten_is_caught_by_the_signed_checkpoint(two_runs: Settings) -> None:
    lines = _lines(_ledger(two_runs))
    previous = "0" * 64
    rewritten = []
    for raw in lines:
        entry = json.loads(raw)
        if entry["event"] == "minimised":
            entry["facts"]["retained"] += 1
        entry["prev_hash"] = previous
        entry["hash"] = previous = entry_hash(entry)
        rewritten.append(files.canonical(entry))
    _write(_ledger(two_runs), rewritten)
    problems = _problems(two_runs)
    assert f"{LA} checkpoint 2: head hash does not match ledger entry 22 (ledger rewritten)" in problems


def test_dropped_last_entry_is_truncation(two_runs: Settings) -> None:
    _write(_ledger(two_runs), _lines(_ledger(two_runs))[:-1])
    problems = _problems(two_runs)
    assert f"{LA} ledger truncated: checkpoint 2 says 22 entries, found 21" in problems
    assert any("reports/" in p and "not recorded in the ledger" in p for p in problems)  # the last entry bound it


def test_deleted_middle_entry_is_named(two_runs: Settings) -> None:
    lines = _lines(_ledger(two_runs))
    _write(_ledger(two_runs), lines[:6] + lines[7:])
    assert f"{LA} ledger: entries missing (deleted): 7" in _problems(two_runs)


def test_swapped_entries_are_out_of_order(two_runs: Settings) -> None:
    lines = _lines(_ledger(two_runs))
    lines[3], lines[4] = lines[4], lines[3]
    _write(_ledger(two_runs), lines)
    assert f"{LA} ledger: entries out of order (line 4 holds entry 5)" in _problems(two_runs)


def test_deleted_certificate_is_missing(two_runs: Settings) -> None:
    files.certificate_file(two_runs, LA, RUN_B).unlink()
    problems = _problems(two_runs)
    assert any(p.startswith(f"{LA} certificate {RUN_B}: missing") for p in problems), problems


def test_flipped_byte_in_a_certificate_invalidates_its_signature(two_runs: Settings) -> None:
    path = files.certificate_file(two_runs, LA, RUN_A)
    path.write_bytes(path.read_bytes().replace(b'"retained": 66', b'"retained": 65'))
    assert f"{LA} certificate {RUN_A}: signature invalid (edited or forged)" in _problems(two_runs)


def test_certificate_replaced_by_another_runs_is_detected(two_runs: Settings) -> None:
    target = files.certificate_file(two_runs, LA, RUN_A)
    target.write_bytes(files.certificate_file(two_runs, LA, RUN_B).read_bytes())
    problems = _problems(two_runs)
    assert f"{LA} certificate file {run_key(RUN_A)}.json: holds the certificate of run {RUN_B} (replaced)" in problems


def test_certificate_that_disagrees_with_the_ledger_names_the_field(settings: Settings) -> None:
    # A genuinely signed certificate with a figure the ledger does not have.
    from fixtures_evidence import certificate_facts

    write_run(settings, RUN_A, report=False)
    path = files.certificate_file(settings, LA, RUN_A)
    delivery_id = json.loads(path.read_text())["facts"]["delivery_id"]
    path.unlink()
    proof.issue_certificate(settings, open_home(settings).keys, LA, RUN_A, certificate_facts(delivery_id, "ab" * 32, RunFigures(
        received=1000, possible=5, unmatched=61)))
    problems = _problems(settings)
    assert f"{LA} certificate {RUN_A}: does not match ledger (possible)" in problems
    assert f"{LA} certificate {RUN_A}: does not match ledger (unmatched)" in problems


def test_edited_checkpoint_signature_is_invalid(two_runs: Settings) -> None:
    path = files.checkpoints_file(two_runs, LA)
    lines = _lines(path)
    cp = json.loads(lines[0])
    cp["size"] = 3
    lines[0] = files.canonical(cp)
    _write(path, lines)
    assert f"{LA} checkpoint 1: signature invalid (forged or edited)" in _problems(two_runs)


def test_checkpoint_forged_with_another_key_is_invalid(two_runs: Settings, tmp_path: Path) -> None:
    from cme_pipeline.config import load_settings

    rogue = load_settings(tmp_path / "rogue", environ={})
    write_run(rogue, RUN_A, report=False)
    forged = json.loads(_lines(files.checkpoints_file(rogue, LA))[0])
    path = files.checkpoints_file(two_runs, LA)
    _write(path, [files.canonical(forged), *_lines(path)[1:]])
    assert f"{LA} checkpoint 1: signature invalid (forged or edited)" in _problems(two_runs)


def test_deleted_last_checkpoint_leaves_a_finished_run_uncovered(two_runs: Settings) -> None:
    path = files.checkpoints_file(two_runs, LA)
    _write(path, _lines(path)[:-1])
    problems = _problems(two_runs)
    assert any("not covered by a signed checkpoint though run" in p and RUN_B in p for p in problems), problems


def test_entries_of_a_run_in_progress_are_only_a_note(two_runs: Settings) -> None:
    proof.record(two_runs, LA, "manual__2026-10-16T09:00:00+00:00", "delivery_received", {"delivery_id": "D3"})
    report = proof.verify(two_runs, open_home(two_runs).keys)
    assert report.ok, report.problems
    assert any("not yet checkpointed" in n for n in report.notes)


@pytest.mark.parametrize("run_id", [RUN_A, RUN_B])
def test_verify_one_run_checks_only_its_certificate(two_runs: Settings, run_id: str) -> None:
    files.certificate_file(two_runs, LA, RUN_A).unlink()
    problems = _problems(two_runs, run_id)
    assert bool(problems) == (run_id == RUN_A)


def test_replaced_verification_key_export_is_detected(two_runs: Settings, tmp_path: Path) -> None:
    from cme_pipeline.config import load_settings

    rogue = load_settings(tmp_path / "rogue", environ={})
    write_run(rogue, RUN_A, report=False)
    files.public_key_file(two_runs, LA).write_bytes(files.public_key_file(rogue, LA).read_bytes())
    assert f"{LA} exported verification key does not match the LA's evidence key (replaced)" in _problems(two_runs)
