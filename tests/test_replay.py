"""Replay cannot bring deleted children back: a processed delivery put back in the inbox, or an
older extract packaged again, is refused with one line, a ledger entry and quarantine, and
nothing already retained or deleted changes."""

from __future__ import annotations

import datetime as dt

import pytest

from cme_pipeline.config import Settings
from cme_pipeline.crypto import open_delivery
from cme_pipeline.errors import DeliveryRejected
from cme_pipeline.evidence.ledger import read_entries
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise
from cme_pipeline.pipeline import steps
from cme_pipeline.simulate.package import package_extract
from cme_pipeline.simulate.wales import simulate_to_home

LA = "W06000015"
STEPS = ("open_delivery", "check_registers", "match", "minimise", "check_retained", "evidence")


def _run(run_id: str) -> None:
    for name in STEPS:
        getattr(steps, name)(LA, run_id, {"la_codes": [LA]})


def test_a_processed_delivery_or_an_older_extract_is_never_run_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CME_HOME", str(settings.home))
    simulate_to_home(settings, [LA], children=300, seed=7)
    (path,) = settings.inbox(LA).glob("*.cmedelivery")
    blob = path.read_bytes()
    manifest, plaintext = open_delivery(open_home(settings).keys, blob, la_code=LA)  # the test's own look
    _run("manual__first")
    retained = minimise.list_retained(open_home(settings), LA)
    assert len(retained) > 0 and not path.exists()

    path.write_bytes(blob)  # the same file, from a backup or the partner's outbox
    with pytest.raises(DeliveryRejected, match="does not hold"):
        steps.open_delivery(LA, "manual__same_file", {"la_codes": [LA]})
    again = package_extract(settings, LA, plaintext, extract_date=dt.date.fromisoformat(manifest.extract_date))
    with pytest.raises(DeliveryRejected, match="not after the last processed extract"):
        steps.open_delivery(LA, "manual__repackaged", {"la_codes": [LA]})
    assert not again.exists() and len(list(settings.quarantine(LA).glob("*.cmedelivery"))) == 2

    assert minimise.list_retained(open_home(settings), LA).equals(retained)  # nothing changed
    rejected = [e for e in read_entries(settings, LA) if e["event"] == "delivery_rejected"]
    assert [(e["run_id"], e["facts"]["check"]) for e in rejected] == [
        ("manual__same_file", "integrity"), ("manual__repackaged", "replay")]
    certificates = [e for e in read_entries(settings, LA) if e["event"] == "run_completed"]
    assert len(certificates) == 1  # one certificate for the delivery, never a second
