"""Restricted records (the NHS "S flag"): what an officer sees instead of where a child lives.

The NHS marks some records sensitive: a family fleeing domestic abuse, some adoptions. Their
address lines, postcode and GP practice never arrive (extract schema 2), and nothing we show
may place the child either: not the candidate register record's address or postcode, and not
a school (``schemas.PLACING_COLUMNS``). Every listing of children passes through ``withhold``.
"""

from __future__ import annotations

from typing import Final

import pandas as pd

from cme_pipeline.schemas import PLACING_COLUMNS, RESTRICTED, is_restricted

# The one wording, shown where a restricted child's address would be: the officer's route to
# the child is the health board, which knows where the family is and whether contact is safe.
WITHHELD: Final = "address withheld (restricted record): contact the health board's named contact"
WITHHELD_FIELD: Final = "withheld"  # the other placing cells: postcode, GP practice, school
_ADDRESS_COLUMNS: Final = frozenset({"address", "address_line1"})
_SIDES: Final = ("", "health_", "register_")  # review packs show both sides of a pair


def restricted_mask(frame: pd.DataFrame) -> pd.Series:
    """True for the rows marked restricted (a frame without the column has none)."""
    if RESTRICTED not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame[RESTRICTED].map(is_restricted).astype(bool)


def _placing(column: str) -> str | None:
    """The contract field a shown column holds, if it places a child."""
    for side in _SIDES:
        if column.startswith(side) and column[len(side):] in PLACING_COLUMNS:
            return column[len(side):]
    return None


def withhold(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` in which restricted rows show no placing value.

    The address column (``address_line1`` or ``address``, of either side) shows ``WITHHELD``;
    every other placing column (further address lines, postcode, GP practice, school code)
    shows ``WITHHELD_FIELD``. Other rows and columns are unchanged.

    Args:
        frame: children as an output shows them, with a ``restricted`` column.
    """
    out = frame.copy()
    rows = restricted_mask(out)
    if not rows.any():
        return out
    for column in out.columns:
        field = _placing(str(column))
        if field is not None:
            out[column] = out[column].astype(object)
            out.loc[rows, column] = WITHHELD if field in _ADDRESS_COLUMNS else WITHHELD_FIELD
    return out
