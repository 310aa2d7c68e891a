"""SQLAlchemy tables of the LA store. Column sets come from ``cme_pipeline.schemas``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cme_pipeline.schemas import REGISTER_SOURCES, Field, register_fields

metadata = sa.MetaData()

_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "str": sa.String(),
    "date": sa.Date(),
    "sex": sa.String(1),
    "float": sa.Float(),
    "int": sa.Integer(),
    "datetime": sa.DateTime(timezone=True),
}


def _column(f: Field, primary_key: bool = False) -> sa.Column[Any]:
    return sa.Column(f.name, _TYPES[f.kind], nullable=not f.required, primary_key=primary_key)


def _register_table(source: str) -> sa.Table:
    # The registers are the LA's own education data, held in plain form as the LA's MIS would;
    # nothing health-derived is ever written to these tables.
    fields = register_fields(source)
    return sa.Table(
        f"register_{source}",
        metadata,
        sa.Column("la_code", sa.String(9), primary_key=True),
        *(_column(f, primary_key=f.name == "record_id") for f in fields),
    )


REGISTER_TABLES: dict[str, sa.Table] = {s: _register_table(s) for s in REGISTER_SOURCES}
