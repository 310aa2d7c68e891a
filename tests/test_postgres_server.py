"""The PostgreSQL test server is real: it stores what it is given, and the LA store runs on it."""

from __future__ import annotations

import sqlalchemy as sa
from postgres_server import PostgresServer

from cme_pipeline.store import metadata
from cme_pipeline.store.db import create_store_engine


def test_server_writes_to_its_data_directory(postgres_server: PostgresServer, postgres_url: str) -> None:
    engine = create_store_engine(postgres_url)
    marker = "cme-marker-7f3a9c"
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE probe (v text)"))
        conn.execute(sa.text("INSERT INTO probe VALUES (:v)"), {"v": marker})
    engine.dispose()
    postgres_server.checkpoint()
    found = any(
        marker.encode() in path.read_bytes()
        for path in (postgres_server.datadir / "base").rglob("*")
        if path.is_file()
    )
    assert found, "the byte scan of base/ must see a value the server stored"


def test_store_tables_create_on_postgresql(postgres_url: str) -> None:
    engine = create_store_engine(postgres_url)
    metadata.create_all(engine)
    names = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert {t.name for t in metadata.sorted_tables} <= names
