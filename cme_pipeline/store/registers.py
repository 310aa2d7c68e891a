"""Reading and writing the LA's education registers."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cme_pipeline.schemas import REGISTER_SOURCES, register_columns, register_fields
from cme_pipeline.store.tables import REGISTER_TABLES


def replace_register(engine: Engine, la_code: str, source: str, frame: pd.DataFrame) -> int:
    """Replace one LA's copy of a register with ``frame``; return the number of rows.

    Args:
        engine: the LA store.
        la_code: the LA's ONS code.
        source: one of ``REGISTER_SOURCES``.
        frame: rows in ``register_columns(source)``; dates as ISO strings or dates.
    """
    table = REGISTER_TABLES[source]
    rows = _to_rows(frame, source, la_code)
    with engine.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.la_code == la_code))
        for start in range(0, len(rows), 20_000):
            conn.execute(sa.insert(table), rows[start : start + 20_000])
    return len(rows)


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
        frame = pd.DataFrame(result.fetchall(), columns=columns)
    for f in register_fields(source):
        if f.kind == "date":
            frame[f.name] = frame[f.name].map(lambda d: d.isoformat() if d is not None else None)
    return frame


def load_registers(engine: Engine, la_code: str) -> dict[str, pd.DataFrame]:
    """Load every register of an LA."""
    return {source: load_register(engine, la_code, source) for source in REGISTER_SOURCES}
