"""Review decisions kept for learning (``decided_pairs``): agreement levels and the decision only."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cme_pipeline.schemas import DECIDED_PAIR, DECISION_PATTERN
from cme_pipeline.store.tables import decided_pairs

_CHUNK = 5_000


@dataclass(frozen=True)
class DecidedPair:
    """One decided pair as the model saw it: the run that sent it to review, the register, the
    agreement level of each comparison (``DECISION_PATTERN`` order) and the decision."""

    run_id: str
    register: str
    levels: tuple[int, ...]
    same: bool


def record_decided_pairs(conn: Connection, la_code: str, decided_on: dt.date, pairs: Iterable[DecidedPair]) -> int:
    """Keep decided pairs for learning, each under a random id; return how many.

    Args:
        conn: an open connection (inside the caller's transaction that applies the decisions).
        la_code: the LA's ONS code.
        decided_on: the day of the decisions.
        pairs: the decided pairs.
    """
    rows: list[dict[str, Any]] = [
        {"la_code": la_code, "decision_id": secrets.token_hex(16), "run_id": p.run_id, "decided_on": decided_on,
         "register": p.register, **{f"level_{c}": int(v) for c, v in zip(DECISION_PATTERN, p.levels, strict=True)},
         "same": bool(p.same)}
        for p in pairs
    ]
    for start in range(0, len(rows), _CHUNK):
        conn.execute(sa.insert(decided_pairs), rows[start : start + _CHUNK])
    return len(rows)


def load_decided_pairs(engine: Engine, la_code: str) -> pd.DataFrame:
    """Every decided pair this LA kept, in ``schemas.DECIDED_PAIR`` columns (what ``matching`` learns from).

    Args:
        engine: the LA store.
        la_code: the LA's ONS code (only its own decisions: LAs never learn from each other's).
    """
    columns = [decided_pairs.c[f"level_{c}"].label(c) for c in DECISION_PATTERN]
    query = sa.select(*columns, decided_pairs.c.same).where(decided_pairs.c.la_code == la_code)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(DECIDED_PAIR))
    return frame.astype({**{c: "int64" for c in DECISION_PATTERN}, "same": bool})
