"""Forensic scans after match + minimise, in the style of SQLite's own secure-delete tests.

Known 999-range NHS numbers (and the children's surnames, dates of birth and postcodes) are
staged and minimised; then every byte of every file is read raw: the SQLite database with its
``-wal``/``-journal``, PostgreSQL's whole data directory (``base/``, ``pg_wal/``, ...) and server
log, the home (reports, runs) and the key store. No plaintext value of any child may be found:
staging and retention are encrypted, so not even the retained children's values are there in clear.

Each store test runs on both key stores: ``[file]`` scans the key directory beside the home,
``[pkcs11]`` the SoftHSM2 token directory, where that backend's keys live (the home then holds
no key at all, and must still hold no plaintext).

A scan is evidence only if it could have found something, so each test also asserts a
non-empty sample and plants one plaintext value in the same store to show the scan finds it.
The registers are deliberately not loaded into the store here: they are the LA's own plain
education data, whose names and dates would legitimately match.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fixtures_minimise import (
    MIN_DELIVERY,
    MIN_LA,
    MIN_RUN,
    MIN_TODAY,
    MatchedDelivery,
)
from postgres_server import PostgresServer
from softhsm import keystore_files, use_keystore

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise as m
from cme_pipeline.nhs_number import generate_test_numbers
from cme_pipeline.store import staging as sstore
from cme_pipeline.store.tables import staged

# Every needle is made of these characters; the scanner looks only inside runs of them (in each
# encoding), checking every window of a needle's length, so it stays linear in the bytes read.
_CHARS = rb"A-Za-z0-9 /'.-"
_RUNS = {
    "utf-8": re.compile(rb"[" + _CHARS + rb"]{6,}"),
    "utf-16-le": re.compile(rb"(?:[" + _CHARS + rb"]\x00){6,}"),
    "utf-16-be": re.compile(rb"(?:\x00[" + _CHARS + rb"]){6,}"),
}


def needles(delivery: MatchedDelivery) -> set[str]:
    """Every child's NHS number (plain and spaced), surname, dob and postcode."""
    frame = delivery.extract
    values: set[str] = set()
    for nhs in frame["nhs_number"]:
        values.update({nhs, f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"})
    for dob in frame["dob"]:
        day = dt.date.fromisoformat(dob)
        values.update({dob, day.strftime("%d/%m/%Y")})
    values.update(s for s in frame["surname"] if len(s) >= 6)  # shorter ones match ciphertext by chance
    values.update(p for p in frame["postcode"] if len(p) >= 6)
    assert len(frame) >= 100 and len(values) > 3 * len(frame)  # an empty sample proves nothing
    assert all(re.fullmatch(rb"[" + _CHARS + rb"]+", v.encode()) for v in values)
    return values


def _found_in(data: bytes, looking_for: set[str], lengths: set[int]) -> set[str]:
    found: set[str] = set()
    for encoding, runs in _RUNS.items():
        for match in runs.finditer(data):
            text = match.group().decode(encoding)
            for size in lengths:
                found.update(w for w in (text[i : i + size] for i in range(len(text) - size + 1)) if w in looking_for)
    return found


def scan(roots: Iterable[Path], looking_for: set[str]) -> dict[str, int]:
    """Files holding any needle (UTF-8 or UTF-16), with how many distinct needles; reads raw bytes."""
    hits: dict[str, int] = {}
    scanned = 0
    lengths = {len(n) for n in looking_for}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            try:
                data = path.read_bytes()
            except (FileNotFoundError, PermissionError):  # a server file removed mid-scan
                continue
            scanned += len(data)
            found = _found_in(data, looking_for, lengths)
            if found:
                hits[str(path)] = len(found)
    assert scanned > 0, "the scan read nothing"
    return hits


def scan_bytes(root: Path, looking_for: set[bytes]) -> list[str]:
    """Files under ``root`` holding any of the given byte strings."""
    return [str(p) for p in sorted(root.rglob("*")) if p.is_file() and any(b in p.read_bytes() for b in looking_for)]


def _minimise(settings: Settings, delivery: MatchedDelivery) -> list[bytes]:
    """Stage and minimise; return slices of the matched children's staged ciphertexts."""
    m.stage_delivery(open_home(settings), MIN_LA, MIN_DELIVERY, delivery.extract)
    engine = open_home(settings).store(MIN_LA)
    with engine.connect() as conn:
        matched = set(delivery.ids("matched"))
        blobs = [bytes(b)[13:45] for rid, b in conn.execute(sa.select(staged.c.health_record_id, staged.c.ciphertext))
                 if rid in matched]
    engine.dispose()
    if settings.database_url is None:  # the check below for their removal must be able to fail
        assert scan_bytes(settings.store_dir(MIN_LA), set(blobs[:3]))
    result = m.minimise(open_home(settings), MIN_LA, MIN_DELIVERY, MIN_RUN, delivery.outcomes, today=MIN_TODAY)
    assert result.matched == len(blobs) > 0 and result.retained > 0
    retained = m.list_retained(open_home(settings), MIN_LA)
    assert set(retained["nhs_number"]) <= set(delivery.nhs_numbers())  # readable, in memory only
    return blobs


def _plant(settings: Settings, value: str) -> None:
    engine = open_home(settings).store(MIN_LA)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE forensic_plant (v TEXT)")
        conn.execute(sa.text("INSERT INTO forensic_plant VALUES (:v)"), {"v": value})
    engine.dispose()


def _settings(root: Path, backend: str, mp: pytest.MonkeyPatch, database_url: str | None = None) -> Settings:
    """A fresh home on ``backend`` (selected in the environment too), optionally on PostgreSQL."""
    env = use_keystore(mp, backend) | ({"CME_DATABASE_URL": database_url} if database_url else {})
    return load_settings(root, environ=env)


def _keys(settings: Settings) -> Path:
    """The key store's files, which must exist: a scan of a missing directory proves nothing."""
    keys = keystore_files(settings.keystore_uri)
    assert keys.is_dir() and any(p.is_file() for p in keys.rglob("*")), keys
    return keys


def _sentinel(delivery: MatchedDelivery) -> str:
    known = set(delivery.nhs_numbers())
    return next(n for n in generate_test_numbers(500, np.random.default_rng(99)) if n not in known)


@pytest.mark.sqlite
@pytest.mark.parametrize("journal", ["delete", "wal", "wal-control"])
def test_sqlite_store_and_home_hold_no_plaintext(
    tmp_path: Path, matched_delivery: MatchedDelivery, journal: str, monkeypatch: pytest.MonkeyPatch,
    keystore_backend: str,
) -> None:
    """``wal-control`` skips the checkpoint to show the shredded-ciphertext check can fail."""
    settings = _settings(tmp_path / "home", keystore_backend, monkeypatch)
    mode = journal.removesuffix("-control")
    engine = open_home(settings).store(MIN_LA)  # the journal mode is a property of the file: set it first
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f"PRAGMA journal_mode={mode}").scalar() == mode
    # A long-lived process (an Airflow worker) keeps a connection open, so SQLite does not get
    # to checkpoint and delete the -wal file when minimisation's own connections close.
    holder = engine.connect()
    holder.exec_driver_sql("SELECT count(*) FROM deliveries").all()
    if journal == "wal-control":
        monkeypatch.setattr(sstore, "release_deleted_space", lambda engine: None)
    try:
        shredded_blobs = _minimise(settings, matched_delivery)
        db = settings.store_dir(MIN_LA)
        files = {p.name for p in db.iterdir()}
        assert "cme.sqlite" in files and (mode != "wal" or "cme.sqlite-wal" in files)
        if journal == "wal-control":
            assert scan_bytes(db, set(shredded_blobs)), "without the checkpoint the WAL keeps deleted rows"
            return
        assert scan([settings.home, _keys(settings)], needles(matched_delivery)) == {}
        # secure_delete + checkpoint: the deleted staged rows' ciphertext is gone from the files too.
        assert scan_bytes(db, set(shredded_blobs)) == []
    finally:
        holder.close()
        engine.dispose()
    sentinel = _sentinel(matched_delivery)
    _plant(settings, sentinel)
    assert scan([db], {sentinel}) != {}, "the scanner failed to find a planted value"


@pytest.mark.postgres
def test_postgresql_files_and_log_hold_no_plaintext(
    tmp_path: Path, matched_delivery: MatchedDelivery, own_cluster: PostgresServer,
    keystore_backend: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cluster of this module's own: the scan reads every file of it, and the session's shared
    # cluster holds other tests' registers (the Celery test's plain registers of the same seed).
    postgres_server = own_cluster
    name = f"forensic_{keystore_backend}"
    postgres_server.drop_database(name)
    settings = _settings(tmp_path / "home", keystore_backend, monkeypatch, postgres_server.create_database(name))
    _minimise(settings, matched_delivery)
    postgres_server.checkpoint()  # shared buffers to base/: otherwise the scan would see nothing
    look = needles(matched_delivery)
    roots = [postgres_server.datadir, postgres_server.logfile, settings.home, _keys(settings)]
    assert (postgres_server.datadir / "base").is_dir() and (postgres_server.datadir / "pg_wal").is_dir()
    assert scan(roots, look) == {}

    sentinel = _sentinel(matched_delivery)
    _plant(settings, sentinel)
    postgres_server.checkpoint()
    hits = scan([postgres_server.datadir], {sentinel})
    assert any("/base/" in p for p in hits), "the scanner failed to find a planted value in base/"


def test_scanner_finds_values_in_any_encoding_inside_binary(tmp_path: Path) -> None:
    look = {"9990000018", "Llewellyn", "2015-03-04"}
    (tmp_path / "a").write_bytes(b"\x00\x9f" + b"9990000018" + b"\xff")
    (tmp_path / "b").write_bytes(b"\x07" + "x Llewellyn".encode("utf-16-le") + b"\x01")
    (tmp_path / "c").write_bytes(b"\x13" + "2015-03-04".encode("utf-16-be"))
    (tmp_path / "d").write_bytes(b"\x00" * 64 + b"999000001" + b"\x00")  # one digit short: not a hit
    hits = scan([tmp_path], look)
    assert sorted(Path(p).name for p in hits) == ["a", "b", "c"]
