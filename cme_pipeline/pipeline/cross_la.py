"""The cross-LA check as a step: of the ``cme_cross_la`` DAG and of ``cme run`` once every chosen
LA's run is done (``la/cross_la.py`` does the work)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cme_pipeline.areas import LA_CODES, parse_la_codes
from cme_pipeline.config import Settings, load_settings


def register_las(settings: Settings) -> list[str]:
    """The LAs whose registers this home holds (every Welsh LA that has an area here)."""
    return [code for code in LA_CODES if settings.la_dir(code).is_dir()]


def run_check(settings: Settings, la_codes: list[str]) -> dict[str, dict[str, Any]]:
    """Check the LAs' unmatched children against every other LA's registers; counts per LA.

    Args:
        settings: the home.
        la_codes: the LAs whose unmatched children are looked for.
    """
    from cme_pipeline.home import open_home
    from cme_pipeline.la.cross_la import check_round

    searched = register_las(settings)
    if not la_codes or len(set(searched) | set(la_codes)) < 2:
        return {}
    results = check_round(open_home(settings), la_codes, searched)
    return {r.la_code: {"checked": r.checked, "removed": r.removed, "found_in": r.found_in,
                        "possible_in": r.possible_in, "moved_to": r.moved_to} for r in results}


def cross_la_check(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The DAG's step: ``params['la_codes']`` checked against every LA's registers (counts only).

    Args:
        params: the DAG run's validated Params (la_codes).
    """
    return run_check(load_settings(), parse_la_codes(",".join(params["la_codes"])))
