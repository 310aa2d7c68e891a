"""Reading and writing the LA's education registers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cme_pipeline.schemas import REGISTER_SOURCES, register_columns, register_fields
from cme_pipeline.store.staging import release_deleted_space
from cme_pipeline.store.tables import REGISTER_TABLES, register_loads


@dataclass(frozen=True)
class RegisterLoad:
    """When and from what one register was last replaced (no personal data)."""

    source: str
    as_of: dt.date
    loaded_at: dt.datetime
    rows: int
    origin: str
    file_sha256: str


def replace_register(
    engine: Engine, la_code: str, source: str, frame: pd.DataFrame, *,
    as_of: dt.date, origin: str = "simulated", file_sha256: str = "",
) -> int:
    """Replace one LA's copy of a register with ``frame`` in one transaction; return the row count.

    The old rows and the load record go together: a failure part-way leaves the previous copy
    whole. On SQLite the deleted rows are zeroed (``secure_delete``) and pushed out of the WAL.

    Args:
        engine: the LA store.
        la_code: the LA's ONS code.
        source: one of ``REGISTER_SOURCES``.
        frame: rows in ``register_columns(source)``; dates as ISO strings or dates.
        as_of: the day the register was taken (its age decides whether a run may use it).
        origin: ``file`` for an LA's export, ``simulated`` for the simulator's.
        file_sha256: SHA-256 of the imported file ("" when simulated).
    """
    table = REGISTER_TABLES[source]
    rows = _to_rows(frame, source, la_code)
    load = {"la_code": la_code, "source": source, "as_of": as_of, "loaded_at": dt.datetime.now(dt.UTC),
            "rows": len(rows), "origin": origin, "file_sha256": file_sha256}
    with engine.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.la_code == la_code))
        for start in range(0, len(rows), 20_000):
            conn.execute(sa.insert(table), rows[start : start + 20_000])
        conn.execute(sa.delete(register_loads).where(
            register_loads.c.la_code == la_code, register_loads.c.source == source))
        conn.execute(sa.insert(register_loads), [load])
    release_deleted_space(engine)
    if engine.dialect.name == "postgresql":
        # Prune the dead rows now rather than at autovacuum's leisure, so their pages are reused
        # by the next load (docs/registers.md says what PostgreSQL may still hold).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM {table.name}, {register_loads.name}")
    return len(rows)


def register_loads_of(engine: Engine, la_code: str) -> dict[str, RegisterLoad]:
    """The last load of each of the LA's registers (a register never loaded is absent)."""
    t = register_loads
    with engine.connect() as conn:
        result = conn.execute(sa.select(t).where(t.c.la_code == la_code))
        return {
            r.source: RegisterLoad(r.source, r.as_of, r.loaded_at, int(r.rows), r.origin, r.file_sha256)
            for r in result
        }


def _to_rows(frame: pd.DataFrame, source: str, la_code: str) -> list[dict[str, object]]:
    columns = list(register_columns(source))
    out = frame[columns].copy()
    for f in register_fields(source):
        if f.kind == "date":
            out[f.name] = pd.to_datetime(out[f.name], format="%Y-%m-%d", errors="coerce").dt.date
    out = out.astype(object).where(out.notna(), None)
    out.insert(0, "la_code", la_code)
    return out.to_dict("records")  # type: ignore[return-value]


def load_register(engine: Engine, la_code: str, source: str) -> pd.DataFrame:
    """Load one register for an LA, dates as ISO strings, in register columns.

    Args:
        engine: the LA store.
        la_code: the LA's ONS code.
        source: one of ``REGISTER_SOURCES``.
    """
    table = REGISTER_TABLES[source]
    columns = list(register_columns(source))
    with engine.connect() as conn:
        result = conn.execute(
            sa.select(*(table.c[c] for c in columns)).where(table.c.la_code == la_code).order_by(table.c.record_id)
        )
        # Plain tuples: given SQLAlchemy rows, pandas probes each for namedtuple and dataclass
        # attributes, and every failed probe raises inside the row (about 1 s per 100,000 rows).
        frame = pd.DataFrame([tuple(row) for row in result], columns=columns)
    for f in register_fields(source):
        if f.kind == "date":
            frame[f.name] = frame[f.name].map(lambda d: d.isoformat() if d is not None else None)
    return frame


def load_registers(engine: Engine, la_code: str) -> dict[str, pd.DataFrame]:
    """Load every register of an LA."""
    return {source: load_register(engine, la_code, source) for source in REGISTER_SOURCES}
