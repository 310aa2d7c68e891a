"""The LA store: SQLAlchemy tables and repositories. Health values arrive here only encrypted."""

from __future__ import annotations

from cme_pipeline.store.registers import (
    RegisterLoad,
    load_register,
    load_registers,
    register_loads_of,
    replace_register,
)
from cme_pipeline.store.tables import REGISTER_TABLES, metadata

__all__ = [
    "REGISTER_TABLES",
    "RegisterLoad",
    "load_register",
    "load_registers",
    "metadata",
    "register_loads_of",
    "replace_register",
]
