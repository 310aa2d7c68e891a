"""One-time receiving keys: signed batches, a partner that uses each once and refuses when none is
left, keys destroyed when the delivery is processed or its quarantine ends."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures_quality import GoodExtract

from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.crypto import held_prekeys
from cme_pipeline.crypto.prekeys import publish, read_bundle
from cme_pipeline.errors import IntegrityError
from cme_pipeline.home import open_home, open_keystore
from cme_pipeline.la.intake import DeliveryQuarantined, expire_quarantine, open_delivery_file
from cme_pipeline.simulate.package import package_extract
from cme_pipeline.simulate.partner import NoPrekeyLeft, import_bundle, take_prekey, unused_prekeys

LA = "W06000015"
EXTRACT_DATE = dt.date(2026, 10, 1)


def test_a_bundle_carries_only_public_halves_signed_by_the_la(settings: Settings) -> None:
    keys = open_home(settings).keys
    raw = publish(keys, LA, 3)
    bundle = read_bundle(raw, lambda _la: None)
    assert bundle.la_code == LA and len(bundle.prekeys) == 3
    assert sorted(p.prekey_id for p in bundle.prekeys) == held_prekeys(keys, LA)
    assert all(len(p.public) == 65 and p.public[0] == 4 for p in bundle.prekeys)  # P-256 points only
    tampered = json.loads(raw)
    tampered["prekeys"][0]["public"] = tampered["prekeys"][1]["public"]
    with pytest.raises(IntegrityError, match="invalid signature"):
        read_bundle(json.dumps(tampered).encode(), lambda _la: None)


def test_the_partner_pins_the_las_key_and_refuses_a_bundle_signed_by_another(
    settings: Settings, tmp_path: Path
) -> None:
    assert import_bundle(settings, publish(open_home(settings).keys, LA, 2)) == (LA, 2)
    impostor = open_keystore(f"file:{tmp_path / 'impostor-keys'}")  # same LA code, another key
    with pytest.raises(IntegrityError, match="signed by a key other than the pinned one"):
        import_bundle(settings, publish(impostor, LA, 2))
    assert unused_prekeys(settings, LA) == 2


def test_each_prekey_is_used_once_and_the_partner_refuses_when_none_is_left(settings: Settings) -> None:
    import_bundle(settings, publish(open_home(settings).keys, LA, 2))
    used = {take_prekey(settings, LA).prekey_id, take_prekey(settings, LA).prekey_id}
    assert len(used) == 2
    with pytest.raises(NoPrekeyLeft, match=f"cme keys publish --la {LA}"):
        take_prekey(settings, LA)


def test_the_commands_publish_import_and_refuse_with_one_line(
    settings: Settings, good_extract: GoodExtract, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(settings.home)]
    plain = settings.home.parent / "extract.csv"
    plain.write_bytes(good_extract.csv())
    assert main([*home, "partner", "package", str(plain), "--la", LA]) == 0  # first contact: a batch
    for _ in range(unused_prekeys(settings, LA)):
        assert main([*home, "partner", "package", str(plain), "--la", LA]) == 0
    capsys.readouterr()
    assert main([*home, "partner", "package", str(plain), "--la", LA]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no unused one-time receiving key" in err[0]
    bundle = settings.home.parent / "bundle.json"
    assert main([*home, "keys", "publish", "--la", LA, "--count", "2", "--out", str(bundle)]) == 0
    assert main([*home, "partner", "import-prekeys", str(bundle)]) == 0
    assert "2 one-time receiving keys imported, 2 unused" in capsys.readouterr().out
    assert main([*home, "partner", "package", str(plain), "--la", LA]) == 0
    assert main([*home, "keys", "status", "--la", LA]) == 0
    held = len(held_prekeys(open_home(settings).keys, LA))
    assert f"{held} one-time receiving keys held" in capsys.readouterr().out
    bundle.write_text("{}")
    assert main([*home, "partner", "import-prekeys", str(bundle)]) == 2
    assert "not in the cme-prekeys/1 format" in capsys.readouterr().err


def test_a_quarantined_deliverys_key_is_destroyed_when_its_period_ends(
    settings: Settings, good_extract: GoodExtract
) -> None:
    home = open_home(settings)
    path = package_extract(settings, LA, good_extract.csv(), extract_date=EXTRACT_DATE, declared_rows=1)
    copy = path.read_bytes()
    with pytest.raises(DeliveryQuarantined) as caught:
        open_delivery_file(home, LA, path, EXTRACT_DATE.year)
    prekey_id = caught.value.details["prekey_id"]
    assert prekey_id in held_prekeys(home.keys, LA)
    day = dt.date.today()
    assert expire_quarantine(home, LA, day + dt.timedelta(days=29)) == []  # still under enquiry
    (ended,) = expire_quarantine(home, LA, day + dt.timedelta(days=30))
    assert ended.prekey_id == prekey_id and ended.prekey_destroyed
    assert prekey_id not in held_prekeys(home.keys, LA)
    assert list(settings.quarantine(LA).iterdir()) == []  # file and note shredded
    # Any copy of the delivery (a backup, the partner's outbox) now opens nowhere.
    path.write_bytes(copy)
    with pytest.raises(DeliveryQuarantined, match="does not hold"):
        open_delivery_file(home, LA, path, EXTRACT_DATE.year)
    shorter = replace(home, settings=replace(settings, quarantine_days=0))
    assert [e.prekey_destroyed for e in expire_quarantine(shorter, LA, day)] == [False]


def test_the_partners_private_key_is_never_in_the_las_key_store(settings: Settings) -> None:
    package_extract(settings, LA, b"nhs_number\n", extract_date=EXTRACT_DATE)
    la_names = open_home(settings).keys.names("")
    assert "pinned/nhs-partner.ed25519" in la_names
    assert not [n for n in la_names if n.startswith("partner/")]
    pinned = open_home(settings).keys.public_key("pinned/nhs-partner.ed25519")
    assert len(pinned) == 32 and base64.b64encode(pinned)


def test_the_retention_step_ends_an_old_quarantine_with_a_ledger_entry(
    settings: Settings, good_extract: GoodExtract, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cme_pipeline import evidence
    from cme_pipeline.evidence.ledger import read_entries
    from cme_pipeline.pipeline import steps

    monkeypatch.setenv("CME_HOME", str(settings.home))
    home = open_home(settings)
    path = package_extract(settings, LA, good_extract.csv(), extract_date=EXTRACT_DATE, declared_rows=1)
    with pytest.raises(DeliveryQuarantined) as caught:
        open_delivery_file(home, LA, path, EXTRACT_DATE.year)
    note = next(settings.quarantine(LA).glob("*.rejection.json"))
    facts = json.loads(note.read_text())
    facts["quarantined_on"] = (dt.date.today() - dt.timedelta(days=31)).isoformat()  # a month ago
    note.write_text(json.dumps(facts))
    result = steps.purge(LA, "scheduled__retention", {})
    assert result["quarantines_ended"] == 1
    (entry,) = [e for e in read_entries(settings, LA) if e["event"] == "quarantine_expired"]
    assert entry["facts"]["prekey_id"] == caught.value.details["prekey_id"] and entry["facts"]["prekey_destroyed"]
    assert evidence.verify(settings, home.keys, la_codes=[LA], airflow=False).ok
