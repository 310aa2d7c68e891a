"""Every evidence file bound into the signed chain, and the verification key pinned outside the home.

Played as a sceptical auditor on a real run's evidence (GX validation results, the deletion
certificate, the DPO report, the exported verification key, the ledger and its checkpoints):
every file flipped, deleted, truncated or reordered is caught and named. And as an operator who
replaces the LA's evidence key and re-signs everything with the new one: only a pin kept outside
the home catches that.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cme_pipeline import evidence
from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.crypto import signing
from cme_pipeline.evidence import artefacts, files
from cme_pipeline.evidence import certificate as cert
from cme_pipeline.evidence.checkpoints import signed_payload
from cme_pipeline.home import open_home
from cme_pipeline.pipeline import steps
from cme_pipeline.simulate.wales import simulate_to_home

LA = "W06000015"
RUN = "manual__binding"


@pytest.fixture
def run_home(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CME_HOME", str(settings.home))
    simulate_to_home(settings, [LA], children=250, seed=3)
    for step in steps.MATCHING_STEPS:
        step(LA, RUN, {"la_codes": [LA]})
    assert evidence.verify(settings, open_home(settings).keys, airflow=False).ok
    return settings


def _evidence_files(settings: Settings) -> list[Path]:
    area = settings.la_dir(LA)
    found = [p for folder in ("evidence", "reports") for p in sorted((area / folder).rglob("*"))
             if p.is_file() and p.name != ".lock"]  # the lock is a lock, not evidence
    return [p for p in found if not p.name.endswith(".cmereview")]


def _named(settings: Settings, path: Path) -> str:
    """What a problem about ``path`` must say."""
    return {"ledger.jsonl": "ledger", "checkpoints.jsonl": "checkpoint", "verification_key.pem": "verification_key.pem"}.get(
        path.name, path.relative_to(settings.la_dir(LA)).as_posix())


def _flip(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def _reorder(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines[1:2] + lines[:1] + lines[2:]) if len(lines) > 1 else data


TAMPER = {"flip a byte": _flip, "truncate": lambda d: d[: len(d) // 2], "reorder lines": _reorder}


def test_every_evidence_file_tampered_any_way_is_caught_and_named(run_home: Settings) -> None:
    keys = open_home(run_home).keys
    paths = _evidence_files(run_home)
    kinds = {p.parent.name for p in paths} | {p.name for p in paths}
    assert {"certificates", "reports", "ledger.jsonl", "checkpoints.jsonl", "verification_key.pem"} <= kinds
    assert sum(1 for p in paths if p.name == "results.json") >= 5  # one per GX gate of the run
    missed = []
    for path in paths:
        original = path.read_bytes()
        for how, change in [*TAMPER.items(), ("delete", None)]:
            if change is None:
                path.unlink()
            else:
                changed = change(original)
                if changed == original:
                    continue  # a one-line file has no order to change
                path.write_bytes(changed)
            problems = evidence.verify(run_home, keys, airflow=False).problems
            if not any(_named(run_home, path) in p for p in problems):
                missed.append(f"{how} {_named(run_home, path)}: {problems}")
            path.write_bytes(original)
        assert evidence.verify(run_home, keys, airflow=False).ok
    assert missed == []


def test_a_file_added_beside_the_evidence_is_named(run_home: Settings) -> None:
    certificate = next(files.certificates_dir(run_home, LA).glob("*.json"))
    copy = certificate.with_name("manual__forged-00000000.json")
    copy.write_bytes(certificate.read_bytes())
    problems = evidence.verify(run_home, open_home(run_home).keys, airflow=False).problems
    assert f"{LA} evidence/certificates/{copy.name}: not recorded in the ledger (added or replaced)" in problems


def _replace_the_key_and_resign(settings: Settings) -> None:
    """What an operator with the key store can do: a new evidence key, and everything re-signed
    with it: the certificates, their hashes in the ledger (so the chain is rehashed from there),
    the checkpoints, and the exported key."""
    from cme_pipeline.evidence.ledger import entry_hash

    keys = open_home(settings).keys
    keys.destroy(signing.evidence_key_name(LA))
    new_id = signing.ensure_evidence_key(keys, LA)
    digests = {}
    for certificate in files.certificates_dir(settings, LA).glob("*.json"):
        body = json.loads(certificate.read_bytes())
        body["key_id"] = new_id
        _, body["signature"] = signing.sign(keys, LA, cert.signed_payload(body))
        certificate.write_bytes(json.dumps(body, indent=1, sort_keys=True).encode() + b"\n")
        digests[f"evidence/certificates/{certificate.name}"] = hashlib.sha256(certificate.read_bytes()).hexdigest()
    path = files.ledger_file(settings, LA)
    entries = [json.loads(raw) for raw in path.read_bytes().splitlines()]
    previous = files.GENESIS_HASH
    for entry in entries:
        if entry["event"] == "artefact_written" and entry["facts"]["file"] in digests:
            entry["facts"]["sha256"] = digests[entry["facts"]["file"]]
        entry["prev_hash"] = previous
        entry["hash"] = previous = entry_hash(entry)
    path.write_bytes(b"\n".join(files.canonical(e) for e in entries) + b"\n")
    checkpoints = files.checkpoints_file(settings, LA)
    lines = []
    for raw in checkpoints.read_bytes().splitlines():
        cp = json.loads(raw)
        cp["key_id"] = new_id
        cp["head_hash"] = entries[cp["size"] - 1]["hash"] if cp["size"] else files.GENESIS_HASH
        _, cp["signature"] = signing.sign(keys, LA, signed_payload(cp))
        lines.append(files.canonical(cp))
    checkpoints.write_bytes(b"\n".join(lines) + b"\n")
    files.public_key_file(settings, LA).write_bytes(signing.public_key_pem(keys, LA))


def test_a_replaced_and_re_signing_key_passes_on_its_own_but_not_against_the_pin(
    run_home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(run_home.home)]
    assert main([*home, "evidence", "public-key", "--la", LA, "--fingerprint"]) == 0
    pinned = capsys.readouterr().out.strip()
    assert len(pinned) == 64 and pinned == artefacts.pem_fingerprint(files.public_key_file(run_home, LA).read_bytes())
    kept = tmp_path / "dpo-copy.pem"  # the DPO's copy, outside the home
    kept.write_bytes(files.public_key_file(run_home, LA).read_bytes())
    assert main([*home, "evidence", "verify", "--la", LA, "--pin", f"{LA}={pinned}"]) == 0

    _replace_the_key_and_resign(run_home)
    capsys.readouterr()
    assert evidence.verify(run_home, open_home(run_home).keys, airflow=False).ok  # consistent on its own
    for pin in (pinned, str(kept)):
        assert main([*home, "evidence", "verify", "--la", LA, "--pin", f"{LA}={pin}"]) == 1
        err = capsys.readouterr().err
        assert f"{LA}: the evidence signing key is not the pinned key" in err
        assert f"{LA} verification_key.pem: not the pinned verification key (replaced)" in err


def test_the_exported_key_deleted_or_not_the_signing_key_fails(run_home: Settings) -> None:
    keys = open_home(run_home).keys
    pem = files.public_key_file(run_home, LA)
    original = pem.read_bytes()
    pem.unlink()
    assert f"{LA} verification_key.pem: missing (the DPO's copy of the verification key)" in evidence.verify(
        run_home, keys, airflow=False).problems
    pem.write_bytes(original)
    assert evidence.verify(run_home, keys, airflow=False, pins={LA: "0" * 64}).problems == [
        f"{LA}: the evidence signing key is not the pinned key (replaced, or the wrong pin)",
        f"{LA} verification_key.pem: not the pinned verification key (replaced)",
    ]
