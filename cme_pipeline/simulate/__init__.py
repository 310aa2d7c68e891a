"""The simulated NHS partnership: a synthetic population, the LA's registers, and deliveries.

Everything here is partner-side (plus the LA registers it seeds). LA-side code never imports the
ground truth.
"""

from __future__ import annotations

from cme_pipeline.simulate.la import DEFAULT_SEED, SimulatedLA, simulate_la
from cme_pipeline.simulate.noise import CoverageConfig, NoiseConfig

__all__ = ["DEFAULT_SEED", "CoverageConfig", "NoiseConfig", "SimulatedLA", "simulate_la"]
