"""Compulsory school age in Wales for an academic year."""

from __future__ import annotations

import datetime as dt


def academic_year_start(on: dt.date) -> int:
    """The calendar year in which the academic year containing ``on`` began (1 September)."""
    return on.year if on.month >= 9 else on.year - 1


def compulsory_dob_window(year_start: int) -> tuple[dt.date, dt.date]:
    """Earliest and latest date of birth of a child of compulsory school age in the year.

    Compulsory school age runs from the term after a child's fifth birthday until the last
    Friday of June of the school year in which they turn 16. Over an academic year starting on
    1 September of ``year_start`` that covers children born from 1 September sixteen years
    earlier to 31 August four years earlier (Reception children, who turn five during the year,
    are included: they reach compulsory school age before it ends).

    Args:
        year_start: the calendar year in which the academic year begins.
    """
    return dt.date(year_start - 16, 9, 1), dt.date(year_start - 4, 8, 31)
