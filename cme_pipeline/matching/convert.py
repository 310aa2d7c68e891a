"""Converters from the health extract and the registers to canonical person columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cme_pipeline.matching.prepare import ALT_SURNAME
from cme_pipeline.schemas import CANONICAL_PERSON, HEALTH_ADDRESS_LINES


def health_row_ids(n: int) -> list[str]:
    """Per-delivery row references ``r000001``, ... by row position (never the NHS number)."""
    return [f"r{i:06d}" for i in range(1, n + 1)]


def health_to_canonical(extract: pd.DataFrame) -> pd.DataFrame:
    """The health extract in canonical person columns, plus ``former_surname``.

    ``record_id`` is the row reference from ``health_row_ids`` so the NHS number never enters
    matching; the address lines are joined with ", " skipping empty ones.

    Args:
        extract: a frame in ``HEALTH_EXTRACT`` columns (missing columns count as empty).
    """
    n = len(extract)

    def col(name: str) -> pd.Series:
        if name in extract.columns:
            return extract[name].fillna("").astype(str).reset_index(drop=True)
        return pd.Series([""] * n, dtype=object)

    lines = np.stack([col(c).to_numpy(dtype=object) for c in HEALTH_ADDRESS_LINES], axis=1) if n else None
    address = [", ".join(p for p in row if p.strip()) for row in lines] if lines is not None else []
    out = pd.DataFrame(
        {
            "record_id": health_row_ids(n),
            **{c: col(c) for c in ("forename", "middle_names", "surname", "dob", "sex")},
            "address": pd.Series(address, dtype=object),
            "postcode": col("postcode"),
            ALT_SURNAME: col(ALT_SURNAME),
        }
    )
    return out[[*CANONICAL_PERSON, ALT_SURNAME]]


def register_to_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """A register (``register_columns(source)``) in canonical person columns.

    Args:
        frame: a register frame; its own ``record_id`` is kept, extra columns are dropped.
    """
    n = len(frame)
    out = {}
    for name in CANONICAL_PERSON:
        if name in frame.columns:
            out[name] = frame[name].fillna("").astype(str).reset_index(drop=True)
        else:
            out[name] = pd.Series([""] * n, dtype=object)
    return pd.DataFrame(out)[list(CANONICAL_PERSON)]
