"""``cme simulate``: partner deliveries and LA registers for any or all Welsh LAs."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from cme_pipeline.areas import parse_la_codes
from cme_pipeline.config import Settings
from cme_pipeline.errors import UsageError
from cme_pipeline.progress import say
from cme_pipeline.simulate import DEFAULT_SEED, NoiseConfig
from cme_pipeline.simulate.cross_la import CROSS_LA_RATE
from cme_pipeline.simulate.la import RESTRICTED_RATE
from cme_pipeline.simulate.population import NAME_FREQUENCIES
from cme_pipeline.simulate.wales import SimulationSummary, simulate_to_home
from cme_pipeline.simulate.witness import witness_embedded


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme simulate``."""
    p = sub.add_parser("simulate", help="simulate NHS deliveries and LA registers")
    p.add_argument("--la", required=True, help="CODE[,CODE..] or all")
    p.add_argument("--children", type=int, help="children across the LAs (default: realistic sizes)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--year", type=int, help="academic year start, e.g. 2026 (default: current)")
    p.add_argument("--noise-scale", type=float, default=1.0, help="multiply register noise rates")
    p.add_argument("--hard", action="store_true",
                   help="harder families: triplets, shared initials, namesakes in the street, registers a term "
                        "old (docs/simulator.md)")
    p.add_argument("--names", choices=NAME_FREQUENCIES,
                   help="name frequencies: 2020 (Jones 5.4%%; the default) or 1830s (Jones 14%%, 39 given names "
                        "per sex, 34 times the namesakes; the default with --hard) (docs/simulator.md)")
    p.add_argument("--restricted-rate", type=float, default=RESTRICTED_RATE,
                   help="share of households the NHS marks restricted: delivered without address, postcode "
                        f"or GP practice (default {RESTRICTED_RATE})")
    p.add_argument("--cross-la-rate", type=float, default=CROSS_LA_RATE,
                   help="base share of children on a neighbouring Welsh LA's register and none of their own "
                        f"(schooled across a border or moved since the census; more for LAs with more borders; "
                        f"only between LAs simulated together; default {CROSS_LA_RATE})")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Simulate and print a per-LA summary (counts only)."""
    codes = parse_la_codes(args.la)
    if args.children is not None and args.children < len(codes):
        raise UsageError("--children must be at least the number of LAs")
    if args.noise_scale < 0:
        raise UsageError("--noise-scale must not be negative")
    if not 0.0 <= args.restricted_rate <= 1.0:
        raise UsageError("--restricted-rate must be between 0 and 1")
    if not 0.0 <= args.cross_la_rate <= 0.5:
        raise UsageError("--cross-la-rate must be between 0 and 0.5")
    start = time.monotonic()
    for answer in witness_embedded(settings, codes):  # receipt requests of earlier runs first
        say(f"NHS partner witness: {answer.line()}")

    def report(s: SimulationSummary) -> None:
        say(
            f"simulated {s.la_code}: {s.children} children on the extract ({s.restricted} restricted, "
            f"{s.other_la} on a neighbouring LA's register), "
            f"{s.on_registers} on a "
            f"register; delivery {s.delivery} in its inbox ({time.monotonic() - start:.1f}s)"
        )

    noise = NoiseConfig().scaled(args.noise_scale)
    noise = noise.hard() if args.hard else noise
    if args.names is not None:
        noise = replace(noise, families=replace(noise.families, names=args.names))
    summaries = simulate_to_home(
        settings,
        codes,
        children=args.children,
        seed=args.seed,
        noise=noise,
        year_start=args.year,
        on_la=report,
        restricted_rate=args.restricted_rate,
        cross_la_rate=args.cross_la_rate,
    )
    total = sum(s.children for s in summaries)
    sys.stdout.write(
        f"simulated {len(summaries)} LA(s), {total} children, in {time.monotonic() - start:.1f}s; "
        f"home {settings.home}\n"
    )
    return 0
