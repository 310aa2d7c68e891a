"""Record encryption on both key store backends: keys that never leave the store, AAD binding,
destroyed keys, NHS-number tags that die with their delivery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from softhsm import keystore_env

from cme_pipeline.crypto import envelope
from cme_pipeline.crypto.keystore import KeyStore
from cme_pipeline.errors import CiphertextInvalid, KeyUnavailable
from cme_pipeline.home import open_keystore

LA = "W06000015"
OTHER = "W06000002"
NHS = "9990000018"


@pytest.fixture
def keys(tmp_path: Path, keystore_backend: str) -> Iterator[KeyStore]:
    uri = keystore_env(keystore_backend).get("CME_KEYSTORE", f"file:{tmp_path / 'keys'}")
    store = open_keystore(uri)
    yield store
    store.close()


def test_round_trip_and_the_key_never_leaves_the_store(keys: KeyStore, tmp_path: Path) -> None:
    key_id = envelope.create_data_key(keys, LA, "D1")
    assert key_id.startswith(f"la/{LA}/data/D1#")
    assert envelope.create_data_key(keys, LA, "D1") == key_id  # idempotent: same key
    cipher = envelope.data_cipher(keys, LA, "D1")
    blob = cipher.encrypt("r000001", NHS.encode())
    assert NHS.encode() not in blob
    assert cipher.decrypt("r000001", blob) == NHS.encode()
    # The store gives out only derived keys: the cipher's key is not the stored secret, and the
    # store has no operation that returns a secret.
    assert not hasattr(keys, "get")
    assert "RecordCipher(la_code=" in repr(cipher) and cipher._key.hex() not in repr(cipher)


def test_padding_hides_exact_length(keys: KeyStore) -> None:
    envelope.create_data_key(keys, LA, "D1")
    cipher = envelope.data_cipher(keys, LA, "D1")
    assert len(cipher.encrypt("r1", b"Al")) == len(cipher.encrypt("r1", b"Bartholomew-Llewellyn"))


def test_ciphertext_is_bound_to_la_delivery_and_record(keys: KeyStore) -> None:
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


def test_retained_scope_differs_from_staged_scope(keys: KeyStore) -> None:
    envelope.create_retained_key(keys, LA, 1)
    retained = envelope.retained_cipher(keys, LA, 1, "D1")
    blob = retained.encrypt("r000001", b"x")
    with pytest.raises(CiphertextInvalid):
        envelope.retained_cipher(keys, LA, 1, "D2").decrypt("r000001", blob)  # ids repeat across deliveries
    envelope.create_retained_key(keys, LA, 2)
    with pytest.raises(CiphertextInvalid):
        envelope.retained_cipher(keys, LA, 2, "D1").decrypt("r000001", blob)


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampered_ciphertext_is_detected(keys: KeyStore, position: int) -> None:
    envelope.create_data_key(keys, LA, "D1")
    cipher = envelope.data_cipher(keys, LA, "D1")
    blob = bytearray(cipher.encrypt("r000007", NHS.encode()))
    blob[position] ^= 0x01
    with pytest.raises(CiphertextInvalid, match="r000007") as err:
        cipher.decrypt("r000007", bytes(blob))
    assert NHS not in str(err.value)
    with pytest.raises(CiphertextInvalid):
        cipher.decrypt("r000007", b"\x01short")


def test_destroyed_data_key_is_unreadable_with_clear_error(keys: KeyStore) -> None:
    envelope.create_data_key(keys, LA, "D1")
    assert envelope.destroy_data_key(keys, LA, "D1") is True
    assert envelope.destroy_data_key(keys, LA, "D1") is False  # idempotent
    assert not envelope.data_key_exists(keys, LA, "D1")
    with pytest.raises(KeyUnavailable, match="delivery D1 is destroyed"):
        envelope.data_cipher(keys, LA, "D1")
    with pytest.raises(KeyUnavailable, match="retained key version 3"):
        envelope.retained_cipher(keys, LA, 3, "D1")


def test_nhs_tags_are_keyed_per_delivery_ignore_spacing_and_die_with_the_key(keys: KeyStore) -> None:
    import hashlib

    for delivery in ("D1", "D2"):
        envelope.create_data_key(keys, LA, delivery)
    envelope.create_data_key(keys, OTHER, "D1")
    tag = envelope.nhs_tagger(keys, LA, "D1").tag(NHS)
    assert tag == envelope.nhs_tagger(keys, LA, "D1").tag("999 000 0018")
    assert tag != envelope.nhs_tagger(keys, LA, "D2").tag(NHS)  # another delivery, another key
    assert tag != envelope.nhs_tagger(keys, OTHER, "D1").tag(NHS)
    assert tag != hashlib.sha256(NHS.encode()).hexdigest()  # never a bare, brute-forceable hash
    assert len(tag) == 64
    envelope.destroy_data_key(keys, LA, "D1")
    with pytest.raises(KeyUnavailable):  # with the delivery's key gone, no tag can be recomputed
        envelope.nhs_tagger(keys, LA, "D1")
