"""Intake of one delivery: strict parsing keeps values exact; failures quarantine, never lose."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fixtures_quality import EXTRACT_DATE, LA, YEAR, GoodExtract

from cme_pipeline.config import Settings
from cme_pipeline.crypto import PARTNER_PINNED, held_prekeys, prekey_name
from cme_pipeline.errors import KeyUnavailable
from cme_pipeline.home import open_home
from cme_pipeline.la.intake import DeliveryQuarantined, open_delivery_file
from cme_pipeline.quality import DeliveryInvalid, parse_extract
from cme_pipeline.schemas import HEALTH_EXTRACT
from cme_pipeline.simulate.package import package_extract

HEADER = ",".join(HEALTH_EXTRACT).encode()


def test_parse_keeps_every_value_as_the_exact_string() -> None:
    row = '0990000026,Siân,"Dafydd, Huw",ap Rhys,,2015-03-04,F,"1 Heol y Parc\nFlat 2",Caerdydd,,,CF10 1AA,W97001,2016-01-01,N,NP20 1AA'
    frame = parse_extract(b"\xef\xbb\xbf" + HEADER + b"\n" + row.encode() + b"\n\n")
    assert list(frame.columns) == list(HEALTH_EXTRACT) and len(frame) == 1
    record = frame.iloc[0]
    assert record["nhs_number"] == "0990000026"  # leading zero kept
    assert record["forename"] == "Siân" and record["middle_names"] == "Dafydd, Huw"
    assert record["address_line1"] == "1 Heol y Parc\nFlat 2" and record["former_surname"] == ""
    assert record["previous_postcode"] == "NP20 1AA"


@pytest.mark.parametrize(
    ("body", "check"),
    [
        (b"", "header"),
        (HEADER.replace(b"dob", b"date_of_birth") + b"\n", "exact_columns"),
        (HEADER + b",nhs_number\n", "exact_columns"),
        (HEADER + b'\n"unterminated,quote\n', "csv"),
    ],
)
def test_parse_rejects_structure_with_a_named_check(body: bytes, check: str) -> None:
    with pytest.raises(DeliveryInvalid) as caught:
        parse_extract(body)
    assert caught.value.check == f"parse:{check}"
    assert caught.value.details["failed"][0]["name"] == check


def test_successful_intake_leaves_the_delivery_in_the_inbox_and_returns_the_extract(
    settings: Settings, good_extract: GoodExtract
) -> None:
    path = package_extract(settings, LA, good_extract.csv(), extract_date=EXTRACT_DATE)
    result = open_delivery_file(open_home(settings), LA, path, YEAR)
    assert path.exists()  # the run shreds it once it has finished, not intake
    assert result.manifest.row_count == 40 and result.validation.success
    assert result.extract.equals(good_extract.frame.astype(object))


def test_a_schema_2_delivery_is_read_as_one_with_no_previous_postcodes(
    settings: Settings, good_extract: GoodExtract, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A partner still on extract schema 2 (no previous_postcode column) is not refused: its
    # children are looked for at their current postcode only.
    from cme_pipeline.simulate import package

    monkeypatch.setattr(package, "EXTRACT_SCHEMA_VERSION", "cme-health-extract/2")
    old = good_extract.frame[list(HEALTH_EXTRACT[:-1])]
    path = package_extract(settings, LA, good_extract.csv(old), extract_date=EXTRACT_DATE)
    result = open_delivery_file(open_home(settings), LA, path, YEAR)
    assert result.manifest.schema_version == "cme-health-extract/2" and result.validation.success
    assert list(result.extract.columns) == list(HEALTH_EXTRACT)
    assert result.extract.equals(good_extract.frame.assign(previous_postcode="").astype(object))
    # ... but a schema 2 manifest over a schema 3 header is refused, naming the extra column
    path = package_extract(settings, LA, good_extract.csv(), extract_date=EXTRACT_DATE)
    with pytest.raises(DeliveryQuarantined, match="unexpected column.*previous_postcode"):
        open_delivery_file(open_home(settings), LA, path, YEAR)


def test_an_unpinned_partner_key_is_a_set_up_fault_and_leaves_the_delivery_waiting(
    settings: Settings, good_extract: GoodExtract
) -> None:
    path = package_extract(settings, LA, good_extract.csv(), extract_date=EXTRACT_DATE)
    open_home(settings).keys.destroy(PARTNER_PINNED)
    with pytest.raises(KeyUnavailable, match="not pinned"):
        open_delivery_file(open_home(settings), LA, path, YEAR)
    assert path.exists() and not settings.quarantine(LA).exists()


def test_a_delivery_to_a_destroyed_one_time_key_never_opens_and_is_quarantined(
    settings: Settings, good_extract: GoodExtract
) -> None:
    path = package_extract(settings, LA, good_extract.csv(), extract_date=EXTRACT_DATE)
    keys = open_home(settings).keys
    (used,) = [p for p in held_prekeys(keys, LA) if p in path.read_bytes().decode("latin-1")]
    assert keys.destroy(prekey_name(LA, used))  # as the run does once the delivery is processed
    with pytest.raises(DeliveryQuarantined, match="one-time receiving key this LA does not hold"):
        open_delivery_file(open_home(settings), LA, path, YEAR)
    note = json.loads(next(settings.quarantine(LA).glob("*.rejection.json")).read_text())
    assert note["prekey_id"] == used and note["check"] == "integrity"


def test_a_second_rejected_delivery_of_the_same_name_never_overwrites_the_first(
    settings: Settings, good_extract: GoodExtract
) -> None:
    path = package_extract(settings, LA, good_extract.csv(), extract_date=EXTRACT_DATE, declared_rows=1)
    sealed = path.read_bytes()
    copy = path.read_bytes()
    with pytest.raises(DeliveryQuarantined) as first:
        open_delivery_file(open_home(settings), LA, path, YEAR)
    path.write_bytes(copy)
    with pytest.raises(DeliveryQuarantined) as second:
        open_delivery_file(open_home(settings), LA, path, YEAR)
    assert first.value.quarantined != second.value.quarantined
    assert first.value.quarantined.read_bytes() == second.value.quarantined.read_bytes() == sealed
    note = json.loads((settings.quarantine(LA) / (second.value.quarantined.name + ".rejection.json")).read_text())
    assert note["failed"][0]["name"] == "row_count_matches_manifest" and note["failed"][0]["observed"] == 40


def test_a_renamed_delivery_is_rejected(settings: Settings, good_extract: GoodExtract) -> None:
    path = package_extract(settings, LA, good_extract.csv(), extract_date=EXTRACT_DATE)
    renamed = path.rename(path.with_name("D20990101-W06000015-00000000.cmedelivery"))
    with pytest.raises(DeliveryQuarantined, match="does not match the signed delivery id"):
        open_delivery_file(open_home(settings), LA, renamed, YEAR)


def test_academic_year_decides_who_is_of_school_age(settings: Settings, good_extract: GoodExtract) -> None:
    path = package_extract(settings, LA, good_extract.csv(), extract_date=dt.date(2030, 10, 1))
    with pytest.raises(DeliveryQuarantined, match="dob_school_age"):
        open_delivery_file(open_home(settings), LA, path, YEAR + 4)  # four years on, the eldest have left
