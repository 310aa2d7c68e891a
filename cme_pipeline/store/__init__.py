"""The LA store: SQLAlchemy tables and repositories. Health values arrive here only encrypted."""

from __future__ import annotations

from cme_pipeline.store.registers import load_register, load_registers, replace_register
from cme_pipeline.store.tables import REGISTER_TABLES, metadata

__all__ = [
    "REGISTER_TABLES",
    "load_register",
    "load_registers",
    "metadata",
    "replace_register",
]
