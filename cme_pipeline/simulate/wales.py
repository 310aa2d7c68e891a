"""Simulate several LAs onto the home: registers into each LA's store, an encrypted delivery into
each LA's inbox, and the ground truth into ``partner/``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cme_pipeline.config import Settings
from cme_pipeline.home import open_home
from cme_pipeline.nhs_number import generate_test_numbers
from cme_pipeline.simulate.cross_la import CROSS_LA_RATE, plan
from cme_pipeline.simulate.geography import AREAS
from cme_pipeline.simulate.la import DEFAULT_SEED, RESTRICTED_RATE, SimulatedLA, simulate_la
from cme_pipeline.simulate.noise import NoiseConfig
from cme_pipeline.simulate.package import package_extract
from cme_pipeline.store import replace_register


@dataclass(frozen=True)
class SimulationSummary:
    """Counts only: what was simulated for one LA."""

    la_code: str
    children: int
    on_registers: int
    register_rows: dict[str, int]
    delivery: str
    restricted: int = 0  # children delivered with restricted=Y (no location)
    other_la: int = 0  # children on a neighbouring LA's register and none of their own


def split_children(la_codes: list[str], total: int | None) -> dict[str, int]:
    """Children per LA: realistic sizes, or ``total`` split in proportion to them.

    Args:
        la_codes: the LAs to simulate.
        total: children across those LAs (None: each LA at its realistic size).
    """
    sizes = np.array([AREAS[c].children for c in la_codes], dtype=float)
    if total is None:
        return {c: int(s) for c, s in zip(la_codes, sizes, strict=True)}
    if total < len(la_codes):
        raise ValueError("--children must be at least the number of LAs")
    exact = sizes / sizes.sum() * total
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact)[: total - counts.sum()]] += 1  # largest remainders
    return {c: int(k) for c, k in zip(la_codes, counts, strict=True)}


def simulate_las(
    la_codes: list[str],
    children: int | None = None,
    seed: int = DEFAULT_SEED,
    noise: NoiseConfig | None = None,
    year_start: int | None = None,
    restricted_rate: float = RESTRICTED_RATE,
    cross_la_rate: float = CROSS_LA_RATE,
) -> Iterator[SimulatedLA]:
    """The LAs ``simulate_to_home`` writes, in memory, one at a time (same arguments, same data).

    Args:
        la_codes: which LAs.
        children: total children across them (None: realistic sizes).
        seed: the simulation seed.
        noise: register-side noise rates.
        year_start: the academic year.
        restricted_rate: share of households whose records the NHS marks restricted.
        cross_la_rate: base share of children on a neighbouring LA's register and none of their
            own (``simulate.cross_la``); only between LAs simulated together.
    """
    counts = split_children(la_codes, children)
    numbers = generate_test_numbers(sum(counts.values()), np.random.default_rng([seed, 999]))
    pairs = plan(counts, cross_la_rate)
    own: dict[str, list[str]] = {}
    cross: list[tuple[str, str, list[str]]] = []
    offset = 0
    for code in la_codes:  # each LA's slice: its own children first, then those it sends
        k = counts[code] - sum(m for (a, _), m in pairs.items() if a == code)
        own[code] = numbers[offset : offset + k]
        offset += k
        for (a, b), m in pairs.items():
            if a == code:
                cross.append((a, b, numbers[offset : offset + m]))
                offset += m
    for code in la_codes:
        yield simulate_la(code, counts[code], seed, noise, year_start, nhs_numbers=own[code],
                          restricted_rate=restricted_rate,
                          cross_pairs=[p for p in cross if code in (p[0], p[1])])


def simulate_to_home(
    settings: Settings,
    la_codes: list[str],
    children: int | None = None,
    seed: int = DEFAULT_SEED,
    noise: NoiseConfig | None = None,
    year_start: int | None = None,
    on_la: Callable[[SimulationSummary], None] | None = None,
    restricted_rate: float = RESTRICTED_RATE,
    cross_la_rate: float = CROSS_LA_RATE,
) -> list[SimulationSummary]:
    """Simulate LAs and write their registers, deliveries and ground truth under the home.

    Args:
        settings: where the home is.
        la_codes: which LAs.
        children: total children across them (None: realistic sizes).
        seed: the simulation seed.
        noise: register-side noise rates.
        year_start: the academic year.
        on_la: called with each LA's summary as it finishes (for progress).
        restricted_rate: share of households whose records the NHS marks restricted.
        cross_la_rate: base share of children on a neighbouring LA's register instead of their own.
    """
    summaries = []
    for sim in simulate_las(la_codes, children, seed, noise, year_start, restricted_rate, cross_la_rate):
        summaries.append(_write_la(settings, sim))
        if on_la is not None:
            on_la(summaries[-1])
    _write_truth_index(settings)
    return summaries


def _write_la(settings: Settings, sim: SimulatedLA) -> SimulationSummary:
    engine = open_home(settings).store(sim.la_code)
    rows = {s: replace_register(engine, sim.la_code, s, f, as_of=dt.date.today()) for s, f in sim.registers.items()}
    truth_dir = settings.partner_dir / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    sim.truth.to_csv(truth_dir / f"{sim.la_code}.csv", index=False)
    sim.register_truth.to_csv(truth_dir / f"{sim.la_code}.registers.csv", index=False)
    plaintext = sim.extract.to_csv(index=False).encode("utf-8")
    path = package_extract(settings, sim.la_code, plaintext, extract_date=sim.extract_date)
    return SimulationSummary(
        la_code=sim.la_code,
        children=len(sim.extract),
        on_registers=int((sim.truth["registers"] != "").sum()),
        register_rows=rows,
        delivery=path.name,
        restricted=int((sim.truth["restricted"] == "Y").sum()),
        other_la=int((sim.truth["other_la"] != "").sum()),
    )


def _write_truth_index(settings: Settings) -> None:
    # partner/truth.csv covers every LA simulated on this home so far (DESIGN.md §7).
    truth_dir = settings.partner_dir / "truth"
    parts = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(truth_dir.glob("W*[0-9].csv"))]
    pd.concat(parts, ignore_index=True).to_csv(settings.partner_dir / "truth.csv", index=False)
