"""Deletion receipts and the NHS partner's witness (issue 14).

The attack the witness exists for: an operator who holds the LA's home *and* its key store cuts
children out of a run, rehashes the ledger and re-signs every checkpoint and the certificate. The
LA's own checks cannot tell; the witness's cosignature of what it saw can. Every test runs on both
key stores (``settings``); ids and counts only, the simulated run's NHS numbers are test-range.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_evidence import LA, write_run

from cme_pipeline import evidence as proof
from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.crypto import signing
from cme_pipeline.evidence import certificate, checkpoints, files, ledger
from cme_pipeline.evidence import witness as la_witness
from cme_pipeline.home import open_home
from cme_pipeline.simulate import witness as partner_witness
from cme_pipeline.simulate.package import package_extract
from cme_pipeline.simulate.partner import connect_la
from cme_pipeline.simulate.receipts import deliveries_file

RUN = "manual__2026-10-02T09:00:00+00:00"
CUT = 100  # children the attacker cuts out of the run


def _verify(settings: Settings) -> proof.VerifyReport:
    return proof.verify(settings, open_home(settings).keys, la_codes=[LA], airflow=False)


def _witness_notes(report: proof.VerifyReport) -> list[str]:
    return [n for n in report.notes if "witness" in n]


@pytest.fixture
def witnessed(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A simulated delivery of 300 children run through every matching step, then witnessed."""
    from cme_pipeline.pipeline import steps
    from cme_pipeline.simulate.wales import simulate_to_home

    monkeypatch.setenv("CME_HOME", str(settings.home))
    simulate_to_home(settings, [LA], children=300, seed=14)
    for step in steps.MATCHING_STEPS:
        step(LA, RUN, {"la_codes": [LA]})
    assert la_witness.waiting_requests(settings, LA) == [1]
    answers = partner_witness.witness_embedded(settings, [LA])
    assert [(a.n, a.kind) for a in answers] == [(1, "cosignature")], answers
    return settings


def test_a_witnessed_run_is_cosigned_the_receipt_kept_and_verify_passes(witnessed: Settings) -> None:
    settings = witnessed
    stored = [json.loads(line) for line in files.read_lines(la_witness.cosignatures_file(settings, LA))]
    size, head = ledger.tip(files.read_lines(files.ledger_file(settings, LA)))
    assert [(a["kind"], a["n"], a["size"], a["head_hash"]) for a in stored] == [("cosignature", 1, size, head)]
    assert la_witness.waiting_requests(settings, LA) == []
    assert not any(la_witness.outbox_dir(settings, LA).iterdir())  # the answered request is retired
    report = _verify(settings)
    assert report.ok and _witness_notes(report) == [], (report.problems, report.notes)
    # The partner keeps (size, head, time) and one receipt per delivery, with the certificate's counts.
    state = partner_witness.read_state(settings, LA)
    assert (state["size"], state["head_hash"]) == (size, head)
    body = certificate.read_certificate(files.certificate_file(settings, LA, RUN))
    receipt = state["receipts"][body["facts"]["delivery_id"]]
    assert receipt["status"] == "deleted" and receipt["certificate"] == RUN
    assert (receipt["deleted"], receipt["retained"]) == (body["matched"], body["facts"]["retained"])
    assert set(state) == {"la_code", "size", "head_hash", "time", "last_request", "receipts"}
    # Answering again changes nothing: each request is answered once.
    assert partner_witness.witness(settings, [LA]) == []


def test_requests_and_answers_hold_no_personal_data_and_are_private(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cme_pipeline.pipeline import steps
    from cme_pipeline.simulate.wales import simulate_to_home

    monkeypatch.setenv("CME_HOME", str(settings.home))
    simulate_to_home(settings, [LA], children=300, seed=15)
    for step in steps.MATCHING_STEPS:
        step(LA, RUN, {"la_codes": [LA]})
    request = la_witness.request_file(settings, LA, 1)
    assert request.stat().st_mode & 0o077 == 0
    partner_witness.witness(settings, [LA])
    answer = la_witness.answer_file(settings, LA, 1)
    assert answer.stat().st_mode & 0o077 == 0
    truth = (settings.partner_dir / "truth" / f"{LA}.csv").read_text()
    numbers = {line.split(",")[0] for line in truth.splitlines()[1:]}
    assert len(numbers) == 300
    for path in (request, answer, partner_witness.state_file(settings, LA)):
        text = path.read_text()
        assert not [n for n in numbers if n in text], path


# -- the rewrite-and-re-sign attack ---------------------------------------------------------------


def _rewrite_run(settings: Settings, run_id: str, cut: int) -> None:
    """Cut ``cut`` matched children out of a run, rehash the ledger, re-sign checkpoints and the
    certificate with the LA's own key: what an operator holding the home and key store can do."""
    keys = open_home(settings).keys
    path = files.ledger_file(settings, LA)
    entries = [json.loads(line) for line in files.read_lines(path)]
    first = None
    for i, entry in enumerate(entries):
        facts = entry["facts"]
        if entry["run_id"] != run_id:
            continue
        if entry["event"] == "delivery_received":
            facts["rows"] -= cut
        elif entry["event"] == "matched":
            facts["matched"] -= cut
            register = max(facts["matched_by_register"], key=facts["matched_by_register"].get)
            facts["matched_by_register"][register] -= cut
        elif entry["event"] == "minimised":
            facts["received"] -= cut
            facts["matched"] -= cut
        else:
            continue
        first = i if first is None else first
    assert first is not None
    cert_path = files.certificate_file(settings, LA, run_id)
    body = certificate.read_certificate(cert_path)
    body["facts"]["received"] -= cut
    register = max(body["facts"]["matched_by_register"], key=body["facts"]["matched_by_register"].get)
    body["facts"]["matched_by_register"][register] -= cut
    body["matched"] -= cut
    _rehash(entries, first)
    body["ledger_head_hash"] = entries[body["ledger_size"] - 1]["hash"]
    _, body["signature"] = signing.sign(keys, LA, certificate.signed_payload(body))
    cert_path.write_bytes(json.dumps(body, indent=1, sort_keys=True).encode() + b"\n")
    # Evidence files bound into the chain by their SHA-256 get the new certificate's digest.
    relative = cert_path.relative_to(settings.la_dir(LA)).as_posix()
    for i, entry in enumerate(entries):
        if entry["event"] == "artefact_written" and entry["facts"].get("file") == relative:
            entry["facts"]["sha256"] = files.sha256(cert_path.read_bytes())
            _rehash(entries, i)
    path.write_bytes(b"".join(files.canonical(e) + b"\n" for e in entries))
    signed = []
    for cp in checkpoints.read_checkpoints(settings, LA):
        cp["head_hash"] = entries[cp["size"] - 1]["hash"] if cp["size"] else files.GENESIS_HASH
        _, cp["signature"] = signing.sign(keys, LA, checkpoints.signed_payload(cp))
        signed.append(files.canonical(cp) + b"\n")
    files.checkpoints_file(settings, LA).write_bytes(b"".join(signed))


def _rehash(entries: list[dict[str, Any]], start: int) -> None:
    for i in range(start, len(entries)):
        entries[i]["prev_hash"] = entries[i - 1]["hash"] if i else files.GENESIS_HASH
        entries[i]["hash"] = ledger.entry_hash(entries[i])


def test_a_rewritten_and_resigned_run_passes_the_las_own_checks_but_not_the_witness(
    witnessed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = witnessed
    size = partner_witness.read_state(settings, LA)["size"]
    before = certificate.read_certificate(files.certificate_file(settings, LA, RUN))
    _rewrite_run(settings, RUN, CUT)
    after = certificate.read_certificate(files.certificate_file(settings, LA, RUN))
    assert after["facts"]["received"] == before["facts"]["received"] - CUT
    # Without the witness every check the LA can run says OK: chain, signatures, certificates.
    with monkeypatch.context() as patched:
        patched.setattr(la_witness, "check_witness", lambda *args: la_witness.WitnessCheck())
        blind = _verify(settings)
    assert blind.ok, blind.problems
    # With it, the cosignature of what the witness saw names the LA and the size.
    report = _verify(settings)
    assert not report.ok
    assert report.problems == [
        f"{LA} checkpoint 1: the witness saw a different ledger at size {size} (it cosigned head "
        f"{partner_witness.read_state(settings, LA)['head_hash'][:16]}, entry {size} now hashes to "
        f"{ledger.tip(files.read_lines(files.ledger_file(settings, LA)))[1][:16]}): rewritten after the witness saw it"
    ]
    # The partner's receipt still says what was really deleted.
    receipt = partner_witness.read_state(settings, LA)["receipts"][before["facts"]["delivery_id"]]
    assert receipt["deleted"] == before["matched"] != after["matched"]
    # The next checkpoint's request does not extend what the witness saw: refused, and the LA
    # stores the refusal, which verify reports too.
    write_run(settings, "manual__2026-10-09T09:00:00+00:00")
    answers = partner_witness.witness_embedded(settings, [LA])
    assert [(a.n, a.kind) for a in answers] == [(2, "refusal")]
    assert answers[0].detail.startswith(f"saw size {size} head ")
    assert f"this request rewrites entry {size} or one before it" in answers[0].detail
    assert partner_witness.read_state(settings, LA)["size"] == size  # the witness did not move
    problems = _verify(settings).problems
    assert any(p.startswith(f"{LA} checkpoint 2: the witness refused to cosign it: saw size {size}") for p in problems)


# -- requests the witness refuses (ledger-only runs) ---------------------------------------------


@pytest.fixture
def connected(settings: Settings) -> Settings:
    """An LA that published prekeys to the partner and pinned its keys, with one witnessed run."""
    connect_la(settings, LA)
    write_run(settings, RUN)
    assert [a.kind for a in partner_witness.witness_embedded(settings, [LA])] == ["cosignature"]
    return settings


def _tamper_request(settings: Settings, n: int, edit: str) -> None:
    path = la_witness.request_file(settings, LA, n)
    request = json.loads(path.read_bytes())
    if edit == "entry":
        entry = json.loads(request["entries"][3])
        entry["facts"]["received"] = 1
        request["entries"][3] = files.canonical(entry).decode()
    elif edit == "checkpoint":
        request["checkpoint"]["signature"] = request["checkpoint"]["signature"][::-1]
    elif edit == "certificate":
        request["certificates"][0]["matched"] -= CUT
    elif edit == "skip":
        request["base"]["size"] += 2
        request["entries"] = request["entries"][2:]
    path.write_bytes(json.dumps(request).encode())


@pytest.mark.parametrize(("edit", "reason"), [
    ("entry", "this request rewrites entry {e} (its hash does not recompute)"),
    ("checkpoint", "checkpoint 2 is not signed by the LA key the partner pinned"),
    ("certificate", "a certificate in request 2 is not signed by the LA key the partner pinned"),
    ("skip", "this request starts at entry {s2}, so entries {s1}-{s} were never shown to the witness"),
])
def test_a_request_that_does_not_extend_what_the_witness_saw_is_refused(
    connected: Settings, edit: str, reason: str
) -> None:
    settings = connected
    seen = partner_witness.read_state(settings, LA)
    write_run(settings, "manual__2026-10-09T09:00:00+00:00")
    _tamper_request(settings, 2, edit)
    (answer,) = partner_witness.witness(settings, [LA])
    s = seen["size"]
    assert answer.kind == "refusal" and reason.format(e=s + 4, s=s + 2, s1=s + 1, s2=s + 3) in answer.detail, answer
    assert partner_witness.read_state(settings, LA)["size"] == s
    refusal = json.loads(la_witness.answer_file(settings, LA, 2).read_bytes())
    assert (refusal["saw_size"], refusal["saw_head_hash"]) == (s, seen["head_hash"])
    assert la_witness.answer_verifies(refusal, partner_witness.witness_public_key(settings))


def test_verify_names_what_is_missing_waiting_forged_or_refused(connected: Settings) -> None:
    settings = connected
    assert _witness_notes(_verify(settings)) == []
    write_run(settings, "manual__2026-10-09T09:00:00+00:00")
    write_run(settings, "manual__2026-10-16T09:00:00+00:00")
    report = _verify(settings)
    assert report.ok and _witness_notes(report) == [f"{LA}: checkpoint(s) 2-3 await the witness's answer "
                                                    f"(receipt request in la/{LA}/outbox/witness)"]
    # A request withheld from the witness: the next one starts where the withheld one ended, so
    # the witness refuses it, and the checkpoint it never saw is a problem too.
    request_3 = json.loads(la_witness.request_file(settings, LA, 3).read_bytes())
    assert request_3["base"]["size"] == checkpoints.read_checkpoints(settings, LA)[1]["size"]  # one line each
    la_witness.request_file(settings, LA, 2).unlink()
    (answer,) = partner_witness.witness_embedded(settings, [LA])
    seen, size = (c["size"] for c in checkpoints.read_checkpoints(settings, LA)[:2])
    assert answer.kind == "refusal" and f"entries {seen + 1}-{size} were never shown to the witness" in answer.detail
    assert _verify(settings).problems == [
        f"{LA} checkpoint 3: the witness refused to cosign it: {answer.detail}",
        f"{LA} checkpoint 2 (ledger size {size}): never cosigned by the witness, though it answered checkpoint 3 "
        f"(request withheld, or its answer deleted)"]
    # The LA's next request starts from what the witness cosigned, and is cosigned.
    write_run(settings, "manual__2026-10-23T09:00:00+00:00")
    assert [a.kind for a in partner_witness.witness_embedded(settings, [LA])] == ["cosignature"]
    # A cosignature edited to fit the ledger no longer verifies.
    path = la_witness.cosignatures_file(settings, LA)
    lines = [json.loads(line) for line in files.read_lines(path)]
    lines[0]["time"] = "2026-10-02T09:00:00+00:00"
    path.write_bytes(b"".join(files.canonical(a) + b"\n" for a in lines))
    assert (f"{LA} checkpoint 1: the witness's answer does not verify with the pinned witness key (forged or edited)"
            in _verify(settings).problems)


def test_an_la_without_a_witness_gets_one_note_and_sends_nothing(settings: Settings) -> None:
    write_run(settings, RUN)
    report = _verify(settings)
    assert report.ok
    assert _witness_notes(report) == [f"{LA}: no witness key pinned, so no checkpoint was checked against the NHS "
                                      f"partner's witness (cme keys pin-witness)"]
    assert not la_witness.outbox_dir(settings, LA).exists()
    # Pinned later: the next checkpoint's request carries the chain from its genesis, and the
    # earlier checkpoint is covered by that first cosignature.
    connect_la(settings, LA)
    write_run(settings, "manual__2026-10-09T09:00:00+00:00")
    request = json.loads(la_witness.request_file(settings, LA, 2).read_bytes())
    size = checkpoints.read_checkpoints(settings, LA)[1]["size"]
    assert request["base"] == {"size": 0, "head_hash": files.GENESIS_HASH} and len(request["entries"]) == size
    partner_witness.witness_embedded(settings, [LA])
    report = _verify(settings)
    assert report.ok and _witness_notes(report) == [
        f"{LA}: checkpoint(s) 1 predate the witness; its first cosignature checked the chain they sign from the genesis"]


# -- the commands ----------------------------------------------------------------------------------


def _cli(settings: Settings, *argv: str) -> int:
    return main(["--home", str(settings.home), *argv])


def test_receipts_list_a_delivery_with_a_receipt_and_one_overdue(
    witnessed: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = witnessed
    late = package_extract(settings, LA, b"nhs_number\n", extract_date=dt.date(2026, 10, 1))
    log = deliveries_file(settings, LA)
    items = [json.loads(line) for line in log.read_text().splitlines()]
    items[-1]["packaged_on"] = (dt.date.today() - dt.timedelta(days=10)).isoformat()
    log.write_text("".join(json.dumps(i) + "\n" for i in items))
    capsys.readouterr()
    assert _cli(settings, "partner", "receipts", "--la", LA) == 0
    out = capsys.readouterr().out.splitlines()
    body = certificate.read_certificate(files.certificate_file(settings, LA, RUN))
    first, second = out[1], out[2]
    assert first.startswith(body["facts"]["delivery_id"]) and " deleted " in first
    assert f"{body['matched']} deleted, {body['facts']['retained']} retained (certificate of {RUN})" in first
    assert second.startswith(late.name.removesuffix(".cmedelivery")) and " overdue " in second
    assert out[-1] == f"{LA}: 2 deliveries, 1 with a deletion receipt, 1 overdue"
    assert _cli(settings, "partner", "receipts", "--la", LA, "--overdue-after", "30") == 0
    assert " waiting " in capsys.readouterr().out.splitlines()[2]


def test_pin_witness_from_the_partners_pem_and_witness_from_the_command_line(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(settings, "partner", "public-key", "--witness") == 0
    pem = tmp_path / "witness.pem"
    pem.write_text(capsys.readouterr().out)
    assert _cli(settings, "keys", "pin-witness", str(pem)) == 0
    key_id = signing.key_id_of(partner_witness.witness_public_key(settings))
    assert f"NHS partner witness key {key_id} pinned" in capsys.readouterr().out
    assert la_witness.pinned_witness_key(open_home(settings).keys) == partner_witness.witness_public_key(settings)
    assert _cli(settings, "partner", "public-key") == 0
    (tmp_path / "partner.pem").write_text(capsys.readouterr().out)
    assert _cli(settings, "keys", "pin-witness", str(tmp_path / "partner.pem")) == 2
    assert "a different NHS partner witness key is pinned already" in capsys.readouterr().err
    connect_la(settings, LA)  # the partner pins the LA's key from its prekey bundle
    write_run(settings, RUN)
    assert _cli(settings, "partner", "witness", "--la", LA) == 0
    out = capsys.readouterr().out
    size = checkpoints.read_checkpoints(settings, LA)[0]["size"]
    assert f"{LA} checkpoint 1: cosignature (ledger size {size}, 1 deletion receipt(s))" in out
    assert out.endswith("1 cosigned, 0 refused\n")
    assert _cli(settings, "partner", "witness") == 0
    assert capsys.readouterr().out == "no receipt request waiting\n"
