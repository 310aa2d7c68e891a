"""Both key store backends behave the same, and the token keeps every secret inside it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from softhsm import USER_PIN, keystore_env, new_token, softhsm_module

from cme_pipeline.crypto.keystore import KeyStore
from cme_pipeline.errors import ConfigError, KeyUnavailable
from cme_pipeline.home import open_keystore


@pytest.fixture
def keys(tmp_path: Path, keystore_backend: str) -> Iterator[KeyStore]:
    store = open_keystore(keystore_env(keystore_backend).get("CME_KEYSTORE", f"file:{tmp_path / 'keys'}"))
    yield store
    store.close()


def test_secrets_give_out_only_derived_keys_and_are_created_once(keys: KeyStore) -> None:
    keys.create_secret("la/W06000015/data/D1")
    first = keys.derive("la/W06000015/data/D1", b"purpose-a")
    assert len(first) == 32 and first == keys.derive("la/W06000015/data/D1", b"purpose-a")
    assert first != keys.derive("la/W06000015/data/D1", b"purpose-b")
    with pytest.raises(KeyUnavailable, match="already exists"):
        keys.create_secret("la/W06000015/data/D1")
    assert keys.names("la/W06000015/data/") == ["la/W06000015/data/D1"]
    assert keys.destroy("la/W06000015/data/D1") and not keys.destroy("la/W06000015/data/D1")
    assert not keys.exists("la/W06000015/data/D1") and keys.names("la/W06000015/") == []
    with pytest.raises(KeyUnavailable, match="not available"):
        keys.derive("la/W06000015/data/D1", b"purpose-a")


def test_secrets_made_together_each_stand_alone_and_none_is_made_over_an_existing_one(keys: KeyStore) -> None:
    names = [f"la/W06000015/transfer/TR-{i:012X}" for i in range(3)]
    keys.create_secrets(names)  # one transfer key per child, made at once by the cross-LA check
    assert keys.names("la/W06000015/transfer/") == names
    derived = {keys.derive(name, b"purpose") for name in names}
    assert len(derived) == 3
    assert keys.destroy(names[0]) and not keys.exists(names[0])
    assert keys.derive(names[1], b"purpose") in derived  # its neighbours outlive it
    with pytest.raises(KeyUnavailable, match="already exists"):
        keys.create_secrets(["la/W06000015/transfer/TR-NEW", names[2]])
    assert not keys.exists("la/W06000015/transfer/TR-NEW")


def test_signing_keys_sign_in_the_store_and_verify_anywhere(keys: KeyStore) -> None:
    public = keys.create_signing_key("la/W06000015/evidence.ed25519")
    assert keys.public_key("la/W06000015/evidence.ed25519") == public
    signature = keys.sign("la/W06000015/evidence.ed25519", b"checkpoint")
    Ed25519PublicKey.from_public_bytes(public).verify(signature, b"checkpoint")  # raises if wrong
    keys.destroy("la/W06000015/evidence.ed25519")
    with pytest.raises(KeyUnavailable):
        keys.sign("la/W06000015/evidence.ed25519", b"checkpoint")


def test_agreement_keys_agree_with_an_ordinary_p256_peer(keys: KeyStore) -> None:
    public = keys.create_agreement_key("la/W06000015/prekeys/00112233445566ff")
    assert len(public) == 65 and public[0] == 4
    peer = ec.generate_private_key(ec.SECP256R1())
    peer_point = peer.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    ours = keys.agree("la/W06000015/prekeys/00112233445566ff", peer_point)
    theirs = peer.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public))
    assert ours == theirs
    with pytest.raises(ValueError):
        keys.agree("la/W06000015/prekeys/00112233445566ff", b"\x04" + bytes(64))  # off the curve
    keys.destroy("la/W06000015/prekeys/00112233445566ff")
    with pytest.raises(KeyUnavailable):
        keys.agree("la/W06000015/prekeys/00112233445566ff", peer_point)


def test_public_values_are_pinned_once_and_kinds_never_mix(keys: KeyStore) -> None:
    keys.put_public("pinned/nhs-partner.ed25519", b"p" * 32)
    assert keys.public_key("pinned/nhs-partner.ed25519") == b"p" * 32
    with pytest.raises(KeyUnavailable, match="already exists"):
        keys.put_public("pinned/nhs-partner.ed25519", b"q" * 32)
    keys.create_secret("la/W06000015/review")
    with pytest.raises(KeyUnavailable):
        keys.sign("la/W06000015/review", b"x")  # a secret is not a signing key


def test_the_token_holds_secrets_sensitive_and_never_extractable() -> None:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    uri = new_token()
    store = open_keystore(uri)
    store.create_secret("la/W06000015/data/D1")
    store.create_signing_key("la/W06000015/evidence.ed25519")
    store.create_agreement_key("la/W06000015/prekeys/00112233445566ff")
    store.close()
    label = uri.split("token=")[1].split("?")[0]
    lib = pkcs11.lib(os.path.realpath(softhsm_module()))  # the one the store loaded
    lib.reinitialize()  # see the token made after the library was loaded
    with lib.get_token(token_label=label).open(user_pin=USER_PIN) as session:
        secret_objects = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}))
        private_objects = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
        assert len(secret_objects) == 1 and len(private_objects) == 2
        for obj in secret_objects + private_objects:
            assert obj[Attribute.SENSITIVE] and not obj[Attribute.EXTRACTABLE] and obj[Attribute.NEVER_EXTRACTABLE]
            with pytest.raises(pkcs11.exceptions.PKCS11Error):
                obj[Attribute.VALUE]  # the token refuses to give out the key


def test_a_wrong_pin_or_uri_is_one_line_that_never_shows_the_pin(tmp_path: Path) -> None:
    uri = new_token()
    wrong = uri.split("&pin-source=")[0] + "&pin-value=0000-not-the-pin"
    with pytest.raises(ConfigError) as caught:
        open_keystore(wrong).exists("anything")
    assert "0000-not-the-pin" not in str(caught.value) and "\n" not in str(caught.value)
    for bad, problem in ((f"pkcs11:token=x?pin-value={USER_PIN}", "module-path"),
                         (f"pkcs11:?module-path={softhsm_module()}&pin-value={USER_PIN}", "token")):
        with pytest.raises(ConfigError, match=problem) as caught:
            open_keystore(bad)
        assert USER_PIN not in str(caught.value)
    assert USER_PIN not in repr(open_keystore(uri))


def test_a_forked_worker_uses_the_token_itself() -> None:
    store = open_keystore(new_token())
    store.create_secret("la/W06000015/data/D1")
    parent = store.derive("la/W06000015/data/D1", b"x")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # as Airflow's and Celery's forked task runners do
        os.close(read)
        try:
            ok = store.derive("la/W06000015/data/D1", b"x") == parent
        except Exception:  # noqa: BLE001 - any failure is the answer
            ok = False
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert store.derive("la/W06000015/data/D1", b"x") == parent
    store.close()


def test_files_made_together_leave_none_behind_when_one_exists_already(tmp_path: Path) -> None:
    from cme_pipeline.durable import create_new_files

    first, taken, last = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    taken.write_bytes(b"another process's key")
    with pytest.raises(FileExistsError):
        create_new_files([(first, b"1"), (taken, b"2"), (last, b"3")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"] and taken.read_bytes() == b"another process's key"
    create_new_files([(first, b"1"), (last, b"3")])
    assert first.read_bytes() == b"1" and (first.stat().st_mode & 0o777) == 0o600
