"""An attacker with everything the LA side holds after a run on real PostgreSQL (cluster files and
WAL included) and every key the LA still has finds no hash or HMAC of any deleted child's NHS
number: the only tags ever written were keyed by the delivery's own key, destroyed with it."""

from __future__ import annotations

import hashlib
import hmac
import io
import re
from pathlib import Path

import pandas as pd
import pytest
from postgres_server import PostgresServer
from softhsm import keystore_env

from cme_pipeline.config import load_settings
from cme_pipeline.crypto import envelope, open_delivery
from cme_pipeline.crypto.keystore import KeyStore
from cme_pipeline.errors import KeyUnavailable
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise
from cme_pipeline.pipeline import steps
from cme_pipeline.simulate.wales import simulate_to_home

LA = "W06000015"
RUN = "manual__pseudonyms"
# Every purpose a key of ours is derived for: an attacker would try them all.
CONTEXTS = (envelope.TAG_KEY, envelope.RECORD_KEY, envelope.KEY_ID, b"cme-scratch/1")
HEX64 = re.compile(rb"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


def _pseudonyms(numbers: list[str], keys: KeyStore, names: list[str]) -> set[str]:
    """Every SHA-256 or HMAC-SHA256 (hex, as a tag column holds it) of these numbers that an
    attacker could compute with these keys, under every purpose our keys are derived for."""
    found = {hashlib.sha256(n.encode()).hexdigest() for n in numbers}
    for name in names:
        for context in CONTEXTS:
            try:
                key = keys.derive(name, context)
            except KeyUnavailable:  # a signing or agreement key: nothing to derive
                continue
            found |= {hmac.new(key, n.encode(), hashlib.sha256).hexdigest() for n in numbers}
    return found


def _hex_runs(roots: list[Path]) -> set[str]:
    """Every 64-hex-digit run in every file under the roots (cluster pages and WAL included)."""
    runs: set[str] = set()
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                runs |= {m.decode().lower() for m in HEX64.findall(path.read_bytes())}
    return runs


@pytest.mark.parametrize("keystore_backend", ["file", "pkcs11"])
def test_no_pseudonym_of_a_deleted_child_survives_its_deliverys_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_cluster: PostgresServer, keystore_backend: str
) -> None:
    cluster = own_cluster
    env = keystore_env(keystore_backend) | {"CME_DATABASE_URL": cluster.create_database(f"tags_{keystore_backend}")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CME_HOME", str(tmp_path / "home"))
    settings = load_settings(tmp_path / "home", environ=env)
    simulate_to_home(settings, [LA], children=400, seed=9)
    (path,) = settings.inbox(LA).glob("*.cmedelivery")
    manifest, plaintext = open_delivery(open_home(settings).keys, path.read_bytes(), la_code=LA)
    numbers = list(pd.read_csv(io.BytesIO(plaintext), dtype=str)["nhs_number"])
    la_side = [tmp_path / "home" / "la", cluster.datadir]

    params = {"la_codes": [LA]}
    steps.open_delivery(LA, RUN, params)
    cluster.checkpoint()
    # The scan can see tags: while the delivery is staged, its key makes every staged tag findable.
    data_key = envelope.data_key_name(LA, manifest.delivery_id)
    staged_tags = _pseudonyms(numbers, open_home(settings).keys, [data_key])
    assert len(staged_tags & _hex_runs(la_side)) >= len(numbers)

    for name in ("check_registers", "match", "minimise", "check_retained", "evidence"):
        getattr(steps, name)(LA, RUN, params)
    cluster.checkpoint()
    retained = set(minimise.list_retained(open_home(settings), LA)["nhs_number"])
    deleted = [n for n in numbers if n not in retained]
    assert len(deleted) > 0.8 * len(numbers) and retained
    keys = open_home(settings).keys
    surviving = keys.names("la/")
    assert data_key not in surviving and surviving  # the LA still holds keys: the attacker has them
    assert _pseudonyms(deleted, keys, surviving) & _hex_runs(la_side) == set()
