"""``cme demo``: what ``make demo`` runs — simulate a Cardiff-sized LA and one more, then match."""

from __future__ import annotations

import argparse
import time

from cme_pipeline.commands.run import run_waiting
from cme_pipeline.config import Settings
from cme_pipeline.pipeline.lock import home_lock
from cme_pipeline.progress import say
from cme_pipeline.simulate.wales import simulate_to_home
from cme_pipeline.simulate.witness import witness_embedded

DEMO_LAS = ["W06000015", "W06000002"]  # Cardiff (about 57,000 children) and Gwynedd


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme demo``."""
    p = sub.add_parser("demo", help="simulate Cardiff and Gwynedd and run the pipeline")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Simulate the demo LAs, run ``cme_matching`` on them, print the summary; the partner then
    witnesses each LA's new checkpoints (deletion receipts)."""
    with home_lock(settings):
        start = time.monotonic()
        for s in simulate_to_home(settings, DEMO_LAS):
            say(f"simulated {s.la_code}: {s.children} children; delivery waiting in its inbox")
        say(f"simulation took {time.monotonic() - start:.1f}s")
        status = run_waiting(settings, DEMO_LAS, {"academic_year": None})
        for answer in witness_embedded(settings, DEMO_LAS):  # the partner's deletion receipts
            say(f"NHS partner witness: {answer.line()}")
        return status
