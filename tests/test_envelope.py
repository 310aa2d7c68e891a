"""Envelope encryption: wrapped data keys, AAD binding, wrong/destroyed keys, HMAC tags."""

from __future__ import annotations

from pathlib import Path

import pytest

from cme_pipeline.crypto import envelope
from cme_pipeline.crypto.keystore import FileKeyStore
from cme_pipeline.errors import CiphertextInvalid, CmeError, KeyUnavailable

LA = "W06000015"
OTHER = "W06000002"
NHS = "9990000018"


@pytest.fixture
def keys(tmp_path: Path) -> FileKeyStore:
    return FileKeyStore(tmp_path / "keys")


def test_round_trip_and_key_stored_only_wrapped(keys: FileKeyStore) -> None:
    key_id = envelope.create_data_key(keys, LA, "D1")
    assert key_id.startswith(f"la/{LA}/data/D1#")
    assert envelope.create_data_key(keys, LA, "D1") == key_id  # idempotent: same key
    cipher = envelope.data_cipher(keys, LA, "D1")
    blob = cipher.encrypt("r000001", NHS.encode())
    assert NHS.encode() not in blob
    assert cipher.decrypt("r000001", blob) == NHS.encode()
    # What the key store holds is the AES-KW wrapping (40 bytes), not the 32-byte key itself.
    stored = keys.get(envelope.data_key_name(LA, "D1"))
    assert len(stored) == 40
    assert repr(cipher) == f"RecordCipher(la_code='{LA}', scope='delivery/D1')"  # no key bytes


def test_padding_hides_exact_length(keys: FileKeyStore) -> None:
    envelope.create_data_key(keys, LA, "D1")
    cipher = envelope.data_cipher(keys, LA, "D1")
    assert len(cipher.encrypt("r1", b"Al")) == len(cipher.encrypt("r1", b"Bartholomew-Llewellyn"))


def test_ciphertext_is_bound_to_la_delivery_and_record(keys: FileKeyStore) -> None:
    for d in ("D1", "D2"):
        envelope.create_data_key(keys, LA, d)
    envelope.create_data_key(keys, OTHER, "D1")
    blob = envelope.data_cipher(keys, LA, "D1").encrypt("r000001", b"x")
    with pytest.raises(CiphertextInvalid, match="record r000002"):
        envelope.data_cipher(keys, LA, "D1").decrypt("r000002", blob)  # swapped onto another row
    with pytest.raises(CiphertextInvalid):
        envelope.data_cipher(keys, LA, "D2").decrypt("r000001", blob)  # another delivery's key
    with pytest.raises(CiphertextInvalid):
        envelope.data_cipher(keys, OTHER, "D1").decrypt("r000001", blob)  # another LA


def test_retained_scope_differs_from_staged_scope(keys: FileKeyStore) -> None:
    envelope.create_retained_key(keys, LA, 1)
    retained = envelope.retained_cipher(keys, LA, 1, "D1")
    blob = retained.encrypt("r000001", b"x")
    with pytest.raises(CiphertextInvalid):
        envelope.retained_cipher(keys, LA, 1, "D2").decrypt("r000001", blob)  # ids repeat across deliveries
    envelope.create_retained_key(keys, LA, 2)
    with pytest.raises(CiphertextInvalid):
        envelope.retained_cipher(keys, LA, 2, "D1").decrypt("r000001", blob)


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampered_ciphertext_is_detected(keys: FileKeyStore, position: int) -> None:
    envelope.create_data_key(keys, LA, "D1")
    cipher = envelope.data_cipher(keys, LA, "D1")
    blob = bytearray(cipher.encrypt("r000007", NHS.encode()))
    blob[position] ^= 0x01
    with pytest.raises(CiphertextInvalid, match="r000007") as err:
        cipher.decrypt("r000007", bytes(blob))
    assert NHS not in str(err.value)
    with pytest.raises(CiphertextInvalid):
        cipher.decrypt("r000007", b"\x01short")


def test_destroyed_data_key_is_unreadable_with_clear_error(keys: FileKeyStore) -> None:
    envelope.create_data_key(keys, LA, "D1")
    assert envelope.destroy_data_key(keys, LA, "D1") is True
    assert envelope.destroy_data_key(keys, LA, "D1") is False  # idempotent
    assert not envelope.data_key_exists(keys, LA, "D1")
    with pytest.raises(KeyUnavailable, match="delivery D1 is destroyed"):
        envelope.data_cipher(keys, LA, "D1")
    with pytest.raises(KeyUnavailable, match="retained key version 3"):
        envelope.retained_cipher(keys, LA, 3, "D1")


def test_wrong_kek_does_not_unwrap(keys: FileKeyStore) -> None:
    envelope.create_data_key(keys, LA, "D1")
    keys.destroy(envelope.kek_name(LA))  # a KEK replaced by another one (e.g. a restore mix-up)
    keys.put(envelope.kek_name(LA), bytes(32))
    with pytest.raises(CiphertextInvalid, match="does not unwrap") as err:
        envelope.data_cipher(keys, LA, "D1")
    assert isinstance(err.value, CmeError)


def test_nhs_tags_are_keyed_per_la_and_ignore_spacing(keys: FileKeyStore) -> None:
    import hashlib

    tag = envelope.nhs_tagger(keys, LA).tag(NHS)
    assert tag == envelope.nhs_tagger(keys, LA).tag("999 000 0018")
    assert tag != envelope.nhs_tagger(keys, OTHER).tag(NHS)
    assert tag != hashlib.sha256(NHS.encode()).hexdigest()  # never a bare, brute-forceable hash
    assert len(tag) == 64
