"""The nhs_partner_simulator DAG's steps: the simulated partner witnesses the chosen LAs' evidence,
then delivers to them.

Partner-side by purpose, so it is the one pipeline module allowed to use ``cme_pipeline.simulate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cme_pipeline.areas import parse_la_codes
from cme_pipeline.config import load_settings
from cme_pipeline.simulate import DEFAULT_SEED
from cme_pipeline.simulate.wales import simulate_to_home


def simulate_deliveries(params: Mapping[str, Any]) -> dict[str, int]:
    """Simulate registers and a delivery for each LA in ``params['la_codes']``; counts per LA.

    Args:
        params: the DAG run's validated Params (la_codes, children, seed).
    """
    codes = parse_la_codes(",".join(params["la_codes"]))
    children = params.get("children")
    summaries = simulate_to_home(
        load_settings(),
        codes,
        children=int(children) if children is not None else None,
        seed=int(params.get("seed", DEFAULT_SEED)),
    )
    return {s.la_code: s.children for s in summaries}


def witness_requests(params: Mapping[str, Any]) -> dict[str, int]:
    """Answer the chosen LAs' waiting receipt requests (the partner's witness); cosigned per LA.

    Args:
        params: the DAG run's validated Params (la_codes).
    """
    from cme_pipeline.simulate.witness import witness_embedded

    codes = parse_la_codes(",".join(params["la_codes"]))
    answers = witness_embedded(load_settings(), codes)
    return {code: sum(1 for a in answers if a.la_code == code and a.kind == "cosignature") for code in codes}
