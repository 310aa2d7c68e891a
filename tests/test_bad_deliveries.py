"""The catalogue of bad deliveries: each is packaged as the partner would, then opened by the LA.

Every one must be rejected with its own clear one-line message (check, column, rows; never a
value), end up byte-for-byte in quarantine still encrypted, leave no personal value anywhere in
the home, and not stop the next good delivery from being processed.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from fixtures_quality import EXTRACT_DATE, LA, OTHER_LA, YEAR, GoodExtract

from cme_pipeline.config import Settings
from cme_pipeline.errors import DeliveryRejected
from cme_pipeline.home import open_home
from cme_pipeline.la.intake import DeliveryQuarantined, open_delivery_file
from cme_pipeline.simulate.package import package_extract


@dataclass(frozen=True)
class Bad:
    """One kind of bad delivery: how to make it and what the rejection must say."""

    make: Callable[[Settings, GoodExtract], Path]
    expect: tuple[str, ...]  # substrings of the one-line message
    check: str  # prefix of the error's check


def _package(settings: Settings, plaintext: bytes, **kw: object) -> Path:
    return package_extract(settings, LA, plaintext, extract_date=EXTRACT_DATE, **kw)  # type: ignore[arg-type]


def _edit(change: Callable[[pd.DataFrame], pd.DataFrame | None]) -> Callable[[Settings, GoodExtract], Path]:
    def make(settings: Settings, good: GoodExtract) -> Path:
        frame = good.frame.copy()
        changed = change(frame)
        return _package(settings, good.csv(frame if changed is None else changed))

    return make


def _set(row: int, column: str, value: str) -> Callable[[Settings, GoodExtract], Path]:
    """Put ``value`` in data row ``row`` (1-based, as messages count) of ``column``."""

    def change(frame: pd.DataFrame) -> None:
        frame.loc[row - 1, column] = value

    return _edit(change)


def _raw(change: Callable[[bytes], bytes]) -> Callable[[Settings, GoodExtract], Path]:
    def make(settings: Settings, good: GoodExtract) -> Path:
        return _package(settings, change(good.csv()))

    return make


def _flip_ciphertext(settings: Settings, good: GoodExtract) -> Path:
    path = _package(settings, good.csv())
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0x01
    path.write_bytes(bytes(blob))
    return path


def _rogue_signer(settings: Settings, good: GoodExtract) -> Path:
    # The LA has pinned the real partner key (packaging pins it first); a rogue key signs.
    return _package(settings, good.csv(), signing_key="rogue/signing.ed25519")


def _addressed_elsewhere(settings: Settings, good: GoodExtract) -> Path:
    """A delivery for Gwynedd copied into Cardiff's inbox."""
    theirs = package_extract(settings, OTHER_LA, good.csv(), extract_date=EXTRACT_DATE)
    ours = settings.inbox(LA) / theirs.name
    ours.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(theirs, ours)
    return ours


def _duplicate(frame: pd.DataFrame) -> None:
    frame.loc[2, "nhs_number"] = frame.loc[0, "nhs_number"]


def _bad_check_digit(frame: pd.DataFrame) -> None:
    number = frame.loc[3, "nhs_number"]
    frame.loc[3, "nhs_number"] = number[:9] + str((int(number[9]) + 1) % 10)


def _invalid_utf8(plaintext: bytes) -> bytes:
    lines = plaintext.split(b"\n")
    lines[5] = lines[5].replace(b",", b",\xff\xfe", 1)
    return b"\n".join(lines)


def _no_header(plaintext: bytes) -> bytes:
    return plaintext.split(b"\n", 1)[1]


def _ragged(plaintext: bytes) -> bytes:
    lines = plaintext.split(b"\n")
    lines[3] = lines[3] + b",extra"
    return b"\n".join(lines)


CATALOGUE: dict[str, Bad] = {
    "extra clinical column": Bad(
        _edit(lambda f: f.assign(diagnosis="asthma")),
        ("exact_columns", "unexpected column(s) diagnosis"), "parse:exact_columns"),
    "missing column": Bad(
        _edit(lambda f: f.drop(columns=["postcode"])),
        ("exact_columns", "missing column(s) postcode"), "parse:exact_columns"),
    "invalid check digit": Bad(
        _edit(_bad_check_digit), ("nhs_number_check_digit", "column nhs_number", "row 4"),
        "suite:delivery:nhs_number_check_digit"),
    "non-numeric NHS number": Bad(
        _set(2, "nhs_number", "99912X4567"), ("nhs_number_ten_digits", "column nhs_number", "row 2"),
        "suite:delivery:nhs_number_ten_digits"),
    "duplicate NHS number": Bad(
        _edit(_duplicate), ("nhs_number_unique", "rows 1, 3"), "suite:delivery:nhs_number_unique"),
    "adult date of birth": Bad(
        _set(5, "dob", "1990-05-17"), ("dob_school_age", "column dob", "row 5"), "suite:delivery:dob_school_age"),
    "unparseable date": Bad(
        _set(6, "dob", "17/05/2015"), ("dob_iso_format", "column dob", "row 6"), "suite:delivery:dob_iso_format"),
    "impossible date": Bad(
        _set(7, "dob", "2015-02-30"), ("dob_real_date", "column dob", "row 7"), "suite:delivery:dob_real_date"),
    "future date": Bad(
        _set(8, "dob", (EXTRACT_DATE + dt.timedelta(days=40)).isoformat()),
        ("dob_not_future", "column dob", "row 8"), "suite:delivery:dob_not_future"),
    "wrong LA code": Bad(_addressed_elsewhere, (f"addressed to LA {OTHER_LA}, not {LA}",), "manifest"),
    "manifest row count mismatch": Bad(
        lambda s, g: _package(s, g.csv(), declared_rows=len(g.frame) + 3),
        ("row_count_matches_manifest",), "suite:delivery:row_count_matches_manifest"),
    "header only": Bad(
        _edit(lambda f: f.iloc[0:0]), ("not_empty", "at least one record"), "suite:delivery:not_empty"),
    "invalid UTF-8": Bad(_raw(_invalid_utf8), ("not valid UTF-8", "line 6"), "parse:utf8"),
    "CSV-injection formula in a name": Bad(
        _set(9, "surname", '=HYPERLINK("http://evil.example","x")'),
        ("surname_no_formula", "column surname", "row 9"), "suite:delivery:surname_no_formula"),
    "10 MB field": Bad(
        _set(10, "address_line1", "A" * 10_000_000),
        ("field_length", "column address_line1", "row 10"), "parse:field_length"),
    "tampered ciphertext": Bad(_flip_ciphertext, ("ciphertext does not match",), "integrity"),
    "wrong signing key": Bad(_rogue_signer, ("signature does not verify",), "integrity"),
    # beyond the issue's list
    "no header row": Bad(_raw(_no_header), ("exact_columns", "column(s) at position"), "parse:exact_columns"),
    "ragged row": Bad(_raw(_ragged), ("field_count", "row 3 does not"), "parse:field_count"),
    "unknown sex code": Bad(_set(11, "sex", "X"), ("sex_code", "row 11"), "suite:delivery:sex_code"),
    "missing surname": Bad(_set(12, "surname", ""), ("surname_present", "row 12"), "suite:delivery:surname_present"),
    "malformed postcode": Bad(_set(13, "postcode", "CF103AT"), ("postcode_format", "row 13"), "suite:delivery:postcode_format"),
}


def _scan_home(settings: Settings, needles: list[str]) -> list[str]:
    """Files under the home (outside the key store) holding any personal value in plain text."""
    found = []
    encoded = [n.encode() for n in needles]
    for path in settings.home.rglob("*"):
        if path.is_file() and "keys" not in path.relative_to(settings.home).parts:
            data = path.read_bytes()
            found += [f"{path.name}" for n in encoded if n in data]
    return found


@pytest.mark.parametrize("case", list(CATALOGUE), ids=list(CATALOGUE))
def test_bad_delivery_is_rejected_quarantined_and_nothing_leaks(
    case: str, settings: Settings, good_extract: GoodExtract
) -> None:
    bad = CATALOGUE[case]
    path = bad.make(settings, good_extract)
    sealed = path.read_bytes()

    with pytest.raises(DeliveryQuarantined) as caught:
        open_delivery_file(open_home(settings), LA, path, YEAR)
    exc = caught.value
    message = str(exc)

    assert isinstance(exc, DeliveryRejected)
    assert "\n" not in message and "rejected and quarantined" in message
    for part in bad.expect:
        assert part in message, message
    assert exc.check.startswith(bad.check), exc.check
    needles = good_extract.needles() + ["HYPERLINK", "17/05/2015", "1990-05-17", "asthma", "99912X4567"]
    details = json.dumps(exc.details)
    assert not [n for n in needles if n in message or n in details]

    # still encrypted, byte for byte, in quarantine, with a PII-free note; the inbox is empty
    assert not path.exists()
    assert exc.quarantined.parent == settings.quarantine(LA)
    assert exc.quarantined.read_bytes() == sealed
    assert json.loads(Path(str(exc.quarantined) + ".rejection.json").read_text())["check"] == exc.check
    assert not list(settings.inbox(LA).glob("*.cmedelivery"))
    assert _scan_home(settings, good_extract.needles()) == []

    # the next delivery is processed normally
    nxt = _package(settings, good_extract.csv())
    opened = open_delivery_file(open_home(settings), LA, nxt, YEAR)
    assert opened.validation.success and len(opened.extract) == len(good_extract.frame)


def test_the_catalogue_covers_the_issue_and_each_message_is_its_own() -> None:
    assert len(CATALOGUE) >= 17
    assert len({c.check for c in CATALOGUE.values()} | {c.expect for c in CATALOGUE.values()}) > 17
    firsts = [c.expect for c in CATALOGUE.values()]
    assert len(set(firsts)) == len(firsts)
