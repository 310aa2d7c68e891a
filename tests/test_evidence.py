"""The evidence ledger, checkpoints, certificates and the DPO report."""

from __future__ import annotations

import json
import re

import pytest
from fixtures_evidence import LA, RunFigures, certificate_facts, write_run

from cme_pipeline import evidence as proof
from cme_pipeline.config import Settings
from cme_pipeline.crypto import signing
from cme_pipeline.errors import CmeError
from cme_pipeline.evidence import files
from cme_pipeline.evidence.ledger import entry_hash, read_entries
from cme_pipeline.home import open_home
from cme_pipeline.simulate import simulate_la

RUN = "manual__2026-10-02T09:00:00+00:00"


def test_entries_are_hash_chained_with_code_version_and_config_hash(settings: Settings) -> None:
    proof.record(settings, LA, RUN, "delivery_received", {"delivery_id": "D1", "rows": 3})
    proof.record(settings, LA, RUN, "matched", {"matched": 2, "possible": 0, "unmatched": 1})
    first, second = read_entries(settings, LA)
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["prev_hash"] == "0" * 64 and second["prev_hash"] == first["hash"]
    assert all(e["hash"] == entry_hash(e) for e in (first, second))
    assert first["code_version"] and len(first["config_hash"]) == 64
    assert (first["la_code"], first["run_id"], first["event"]) == (LA, RUN, "delivery_received")


def test_config_hash_changes_with_thresholds_not_with_paths(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from cme_pipeline.evidence.ledger import config_hash

    assert config_hash(settings) == config_hash(replace(settings, home=tmp_path / "elsewhere"))
    assert config_hash(settings) != config_hash(replace(settings, match_threshold=0.9))


def test_record_is_idempotent_for_retries(settings: Settings) -> None:
    for _ in range(3):
        proof.record(settings, LA, RUN, "minimised", {"received": 3, "matched": 2, "retained": 1})
    proof.record(settings, LA, RUN, "minimised", {"received": 3, "matched": 2, "retained": 2})
    proof.record(settings, LA, "another-run", "minimised", {"received": 3, "matched": 2, "retained": 1})
    assert [e["facts"]["retained"] for e in read_entries(settings, LA)] == [1, 2, 1]


@pytest.mark.parametrize("facts", [
    {"note": "9991234567"}, {"note": "child 999 123 4567 missing"}, {"ids": ["999-123-4567"]},
    {"nested": {"deep": [1, {"x": 9991234567}]}}, {"9991234567": 1},
])
def test_record_refuses_anything_like_an_nhs_number(settings: Settings, facts: dict[str, object]) -> None:
    with pytest.raises(proof.EvidenceRefused) as caught:
        proof.record(settings, LA, RUN, "matched", facts)
    assert "999" not in str(caught.value)  # the error names where, never the value
    assert read_entries(settings, LA) == []


def test_record_accepts_hashes_ids_and_timestamps(settings: Settings) -> None:
    # A SHA-256 hex often holds ten digits in a row: part of a longer token, not an NHS number.
    proof.record(settings, LA, RUN, "delivery_received", {
        "delivery_sha256": "a1234567890123b" + "0" * 49, "delivery_id": "D20261002-W06000015-1a2b3c4d",
        "at": "2026-10-02T09:00:00.123456+00:00", "rows": 123456789, "ratio": 0.5,
    })
    assert len(read_entries(settings, LA)) == 1


def test_record_refuses_unknown_events_and_non_json(settings: Settings) -> None:
    with pytest.raises(proof.EvidenceRefused):
        proof.record(settings, LA, RUN, "made_up", {})
    with pytest.raises(proof.EvidenceRefused):
        proof.record(settings, LA, RUN, "matched", {"rows": object()})


def test_checkpoint_signs_size_and_head_and_skips_when_unchanged(settings: Settings) -> None:
    proof.record(settings, LA, RUN, "delivery_received", {"delivery_id": "D1"})
    proof.checkpoint(settings, open_home(settings).keys, LA)
    proof.checkpoint(settings, open_home(settings).keys, LA)
    proof.record(settings, LA, RUN, "run_failed", {"delivery_id": "D1"})
    proof.checkpoint(settings, open_home(settings).keys, LA)
    lines = files.read_lines(files.checkpoints_file(settings, LA))
    checkpoints = [json.loads(line) for line in lines]
    assert [(c["n"], c["size"]) for c in checkpoints] == [(1, 1), (2, 2)]
    assert checkpoints[-1]["head_hash"] == read_entries(settings, LA)[-1]["hash"]
    from cme_pipeline.evidence.checkpoints import signed_payload

    keys = open_home(settings).keys
    assert signing.verify(keys, LA, signed_payload(checkpoints[0]), checkpoints[0]["signature"])
    forged = checkpoints[0] | {"size": 5}
    assert not signing.verify(keys, LA, signed_payload(forged), checkpoints[0]["signature"])


def test_public_key_pem_verifies_a_certificate_outside_the_key_store(settings: Settings) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from cme_pipeline.evidence.certificate import signed_payload

    path = write_run(settings, RUN, report=False)
    body = json.loads(path.read_text())
    public = load_pem_public_key(signing.public_key_pem(open_home(settings).keys, LA))
    public.verify(__import__("base64").b64decode(body["signature"]), signed_payload(body))  # type: ignore[union-attr,call-arg]


def test_certificate_is_signed_idempotent_and_never_rewritten(settings: Settings) -> None:
    path = write_run(settings, RUN, report=False)
    body = json.loads(path.read_text())
    assert body["run_id"] == RUN and body["la_code"] == LA and body["matched"] == RunFigures().matched
    assert body["facts"]["matched_by_register"] == dict(RunFigures().by_register)
    delivery_id = body["facts"]["delivery_id"]
    again = proof.issue_certificate(settings, open_home(settings).keys, LA, RUN, certificate_facts(delivery_id, "ab" * 32, RunFigures()))
    assert again == path and json.loads(path.read_text()) == body
    different = certificate_facts(delivery_id, "ab" * 32, RunFigures(unmatched=59, possible=7))
    with pytest.raises(CmeError, match="different figures"):
        proof.issue_certificate(settings, open_home(settings).keys, LA, RUN, different)
    assert json.loads(path.read_text()) == body


def _figures(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-figure="([^"]+)">([^<]*)<', html))


def test_report_figures_equal_the_ledger(settings: Settings) -> None:
    figures = RunFigures()
    write_run(settings, RUN, figures=figures)
    html = files.report_file(settings, LA, RUN).read_text()
    ledger = {e["event"]: e["facts"] for e in read_entries(settings, LA)}
    shown = _figures(html)
    minimised = ledger["minimised"]
    for name in ("received", "matched", "possible", "unmatched", "retained"):
        assert shown[name] == f"{minimised[name]:,}", name
    for register, count in ledger["matched"]["matched_by_register"].items():
        assert shown[f"matched:{register}"] == f"{count:,}"
    for name in ("review_decisions_learned_from", "cleared_by_decisions"):  # learning from reviews: counts
        assert shown[name] == f"{ledger['matched'][name]:,}", name
    assert shown["retention_expiry"] == ledger["retained"]["retention_expiry"]
    assert shown["data_key_id"] == ledger["key_destroyed"]["data_key_id"]
    assert 'data-verified="yes"' in html
    assert "<script" not in html.lower() and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert html.count("<svg") == 2  # flow chart and score distribution
    assert "crypto-shredding" in html


def test_report_of_tampered_evidence_says_it_did_not_verify(settings: Settings) -> None:
    path = write_run(settings, RUN, report=False)
    body = json.loads(path.read_text())
    body["facts"]["retained"] += 1
    path.write_text(json.dumps(body))
    html = proof.render_report(settings, open_home(settings).keys, LA, RUN).read_text()
    assert 'data-verified="no"' in html and "signature invalid" in html


def test_report_holds_no_personal_data_and_the_scan_can_find_it(settings: Settings) -> None:
    sim = simulate_la(LA, children=300, seed=7)
    probes = _probes(sim.extract)
    write_run(settings, RUN)
    html = files.report_file(settings, LA, RUN).read_text()
    assert _found(html, probes) == []
    # The scan works: plant one child's surname and NHS number and it is found.
    planted = html.replace("</body>", f"<p>{sim.extract['surname'].iloc[0]} {sim.extract['nhs_number'].iloc[0]}</p></body>")
    assert len(_found(planted, probes)) >= 2


def test_hostile_ids_are_escaped_in_the_report(settings: Settings) -> None:
    hostile = "manual__<script>alert(1)</script>&"
    proof.record(settings, LA, hostile, "delivery_rejected", {"delivery_file": "<img src=x>.cmedelivery", "check": "schema"})
    html = proof.render_report(settings, open_home(settings).keys, LA, hostile).read_text()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_report_without_ledger_entries_is_refused(settings: Settings) -> None:
    with pytest.raises(CmeError, match="no entries"):
        proof.render_report(settings, open_home(settings).keys, LA, RUN)


def _probes(extract) -> set[str]:  # type: ignore[no-untyped-def]
    probes: set[str] = set(extract["nhs_number"])
    for column in ("forename", "surname", "postcode", "dob", "address_line1"):
        probes |= {v for v in extract[column] if isinstance(v, str) and len(v) >= 4}
    probes |= {f"{n[:3]} {n[3:6]} {n[6:]}" for n in extract["nhs_number"]}
    return probes


def _found(html: str, probes: set[str]) -> list[str]:
    words = set(re.findall(r"[A-Za-z][A-Za-z'\-]+|\d[\d ]{8,}\d|\d{4}-\d{2}-\d{2}|[A-Z]{1,2}\d[\dA-Z]? ?\d[A-Z]{2}", html))
    lowered = html.lower()
    return sorted(p for p in probes if p in words or (len(p) > 6 and " " in p and p.lower() in lowered))

