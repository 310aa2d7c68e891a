"""``cme demo``: what ``make demo`` runs — simulate a Cardiff-sized LA and one more, then match."""

from __future__ import annotations

import argparse
import sys

from cme_pipeline.config import Settings
from cme_pipeline.progress import say
from cme_pipeline.simulate.wales import simulate_to_home

DEMO_LAS = ["W06000015", "W06000002"]  # Cardiff (about 57,000 children) and Gwynedd


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme demo``."""
    p = sub.add_parser("demo", help="simulate Cardiff and Gwynedd and run the pipeline")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Simulate the demo LAs, then run matching on them."""
    for s in simulate_to_home(settings, DEMO_LAS):
        say(f"simulated {s.la_code}: {s.children} children; delivery waiting in its inbox")
    sys.stdout.write(
        "Simulation done. The matching DAG is not built yet, so the demo ends here.\n"
    )
    return 0
