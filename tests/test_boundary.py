"""The partner -> LA trust boundary: only the right LA decrypts; tampering is always detected."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import pytest

from cme_pipeline.config import Settings
from cme_pipeline.crypto import PARTNER_PINNED, open_delivery, pin_partner_key, read_manifest
from cme_pipeline.crypto.boundary import MAGIC
from cme_pipeline.crypto.prekeys import publish
from cme_pipeline.errors import DeliveryRejected, IntegrityError, KeyUnavailable
from cme_pipeline.home import open_home, open_keystore
from cme_pipeline.simulate.package import count_records, package_extract

CARDIFF, GWYNEDD = "W06000015", "W06000002"
PLAIN = (
    "nhs_number,forename,middle_names,surname,former_surname,dob,sex,address_line1,address_line2,"
    "address_line3,address_line4,postcode,gp_practice_code,registration_date\n"
    "9990000026,Siân,,Jones,,2015-03-04,F,1 Heol y Parc,Cardiff,,,CF10 1AA,W97001,2016-01-01\n"
    '9990000034,Llŷr,"Dafydd, Huw",ap Rhys,,2014-05-06,M,2 Stryd Fawr,Cardiff,,,CF10 1AB,W97001,2015-01-01\n'
).encode()


def _deliver(settings: Settings, la: str = CARDIFF, **kw: object) -> Path:
    return package_extract(settings, la, PLAIN, extract_date=dt.date(2026, 10, 1), **kw)  # type: ignore[arg-type]


def test_right_la_key_decrypts_to_the_exact_plaintext(settings: Settings) -> None:
    path = _deliver(settings)
    manifest, plaintext = open_delivery(open_home(settings).keys, path.read_bytes(), la_code=CARDIFF)
    assert plaintext == PLAIN
    assert manifest.row_count == 2 and manifest.la_code == CARDIFF
    assert path.parent == settings.inbox(CARDIFF) and path.name == f"{manifest.delivery_id}.cmedelivery"


def test_another_las_key_cannot_open_it(settings: Settings) -> None:
    path = _deliver(settings)
    _deliver(settings, GWYNEDD)  # Gwynedd has keys too
    blob = path.read_bytes()
    keys = open_home(settings).keys
    with pytest.raises(DeliveryRejected, match="addressed to LA W06000015, not W06000002"):
        open_delivery(keys, blob, la_code=GWYNEDD)


def test_another_key_store_of_the_same_la_cannot_decrypt(settings: Settings, tmp_path: Path) -> None:
    path = _deliver(settings)
    # Same LA code and the same pinned partner, but its own one-time keys: not the one used.
    other = open_keystore(f"file:{tmp_path / 'other-keys'}")
    pin_partner_key(other, open_home(settings).keys.public_key(PARTNER_PINNED))
    publish(other, CARDIFF, 2)
    with pytest.raises(IntegrityError, match="does not hold"):
        open_delivery(other, path.read_bytes(), la_code=CARDIFF)


@pytest.mark.parametrize("where", ["magic", "header", "signature", "ciphertext", "last"])
def test_a_flipped_byte_anywhere_is_detected(settings: Settings, where: str) -> None:
    path = _deliver(settings)
    blob = bytearray(path.read_bytes())
    (header_length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    ciphertext_start = len(MAGIC) + 4 + header_length
    position = {
        "magic": 3,
        "header": blob.index(b'"row_count"') + 14,
        "signature": blob.index(b'"signature"') + 20,
        "ciphertext": ciphertext_start + 40,
        "last": len(blob) - 1,
    }[where]
    blob[position] ^= 0x01
    with pytest.raises(IntegrityError):
        open_delivery(open_home(settings).keys, bytes(blob), la_code=CARDIFF)


def test_a_wrong_signing_key_is_detected(settings: Settings) -> None:
    _deliver(settings)  # the genuine partner key exists and is trusted
    rogue = _deliver(settings, signing_key="rogue/signing.ed25519")
    with pytest.raises(IntegrityError, match="signature does not verify"):
        read_manifest(open_home(settings).keys, rogue.read_bytes())


def test_without_the_partner_key_nothing_is_trusted(settings: Settings, tmp_path: Path) -> None:
    path = _deliver(settings)
    with pytest.raises(KeyUnavailable):
        read_manifest(open_keystore(f"file:{tmp_path / 'empty'}"), path.read_bytes())


def test_declared_row_count_is_signed_as_given(settings: Settings) -> None:
    path = _deliver(settings, declared_rows=5)
    manifest, _ = read_manifest(open_home(settings).keys, path.read_bytes())
    assert manifest.row_count == 5


def test_count_records_counts_csv_records_not_lines() -> None:
    assert count_records(PLAIN) == 2
    assert count_records(b"a,b\n") == 0
    assert count_records(b'a,b\n"x\ny",1\n') == 1
    assert count_records(b"a,b\n\xff\xfe,1\n") == 1


def test_no_stray_files_in_the_inbox(settings: Settings) -> None:
    _deliver(settings)
    names = [p.name for p in settings.inbox(CARDIFF).iterdir()]
    assert len(names) == 1 and names[0].endswith(".cmedelivery")
