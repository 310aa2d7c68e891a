"""The settings of one linkage run."""

from __future__ import annotations

from dataclasses import dataclass

from cme_pipeline.config import DEFAULT_MATCH_THRESHOLD, DEFAULT_POSSIBLE_THRESHOLD

PROFILES = ("children", "general")


@dataclass(frozen=True)
class LinkConfig:
    """How ``link`` and ``match_registers`` decide.

    Attributes:
        match_threshold: a pair at or above this probability is a ``match``.
        possible_threshold: a pair at or above this (and below ``match_threshold``) is
            ``possible`` and goes to clerical review; below it, a non-match.
        u_sample: random pairs drawn to estimate u-probabilities (how often fields agree by
            chance). A million keeps the standard error of a 1-in-10,000 level near 1%.
        em_sample: candidate pairs per EM training session; enough for stable m-probabilities
            and small enough that training is a fraction of the run.
        em_iterations: the EM cap; it usually converges in under 15.
        term_frequency: weigh agreement on a name by how rare the name is (Jones counts for less
            than Przybylski).
        ambiguity_bits: a pair is a ``match`` only if no other pair of either record comes within
            this many bits (a factor of 2**bits in odds) of its weight; otherwise both are
            ``possible``. Two register records of one child, or two same-name same-dob children
            one of whom moved, are for a human to tell apart, not for row order.
        seed: the random seed for sampling, so a run is reproducible.
        workers: threads for rapidfuzz (-1: every core).
        profile: ``children`` (the pipeline's: school-age children against LA registers) or
            ``general`` (any two files of people, adults too, with heavy corruption: see
            ``matching.general``). ``cme link`` uses ``general``; ``match_registers`` always
            the pipeline's.
    """

    match_threshold: float = DEFAULT_MATCH_THRESHOLD
    possible_threshold: float = DEFAULT_POSSIBLE_THRESHOLD
    u_sample: int = 1_000_000
    em_sample: int = 300_000
    em_iterations: int = 25
    term_frequency: bool = True
    ambiguity_bits: float = 5.0
    seed: int = 1
    workers: int = -1
    profile: str = "children"

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
        if not 0.0 <= self.possible_threshold <= self.match_threshold <= 1.0:
            raise ValueError("thresholds must satisfy 0 <= possible <= match <= 1")

