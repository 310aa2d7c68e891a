"""Engines for the LA store: SQLite by default, PostgreSQL by URL, the same code for both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cme_pipeline.store.tables import metadata


def create_store_engine(url: str) -> Engine:
    """Create an engine; SQLite connections get and verify ``secure_delete=ON``.

    Args:
        url: a SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # secure_delete makes SQLite overwrite deleted content with zeros instead of leaving it in
    # free pages; we assert it took effect because a build can compile it out.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA secure_delete")
        if cursor.fetchone()[0] != 1:
            raise RuntimeError("SQLite refused PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def create_tables(engine: Engine) -> None:
    """Create the LA store's tables where missing (the composition root calls this once).

    Args:
        engine: an engine from ``create_store_engine``.
    """
    metadata.create_all(engine)
