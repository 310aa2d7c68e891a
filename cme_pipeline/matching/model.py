"""The Fellegi-Sunter model: u from random pairs, m by EM, term-frequency adjusted weights.

Why these estimators:

- **u** (how often a field agrees by chance) comes from uniformly random left-right pairs, which
  are almost all non-matches; it needs no labels and no assumption about the matches.
- **m** (how often it agrees for the same child) comes from EM, with u held fixed, in two
  training sessions (as Splink does): pairs sharing a date of birth train the name, sex, middle
  and location comparisons; pairs sharing forename and surname train dob, sex, middle and
  location. A comparison is never trained on pairs selected for agreeing on it, which would bias
  its m towards 1.
- Both are shrunk towards fixed prior guesses (``PRIOR_M``, ``PRIOR_U``) with a pseudo-count, so
  tiny inputs (a test, a small LA) still get sensible weights and large inputs are driven by data.
- Term frequency: exact agreement on a name weighs log2(m / f) where f is that name's frequency
  in both frames together, instead of log2(m / u), so Jones counts for less than Przybylski.
- Officers' review decisions, when given, are learned per agreement pattern (``learn``: which
  patterns a person keeps rejecting), not folded into m and u; the module says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from cme_pipeline.matching.compare import COMPARISONS, LEVELS, TF_LEVELS, compare
from cme_pipeline.matching.config import LinkConfig
from cme_pipeline.matching.learn import Learned, learn
from cme_pipeline.matching.prepare import Prepared

# Prior guesses, low level first (order of compare.LEVELS). m: registers mostly agree with GP
# records; u: a random pair of Welsh children rarely does.
PRIOR_M: dict[str, tuple[float, ...]] = {
    "forename": (0.01, 0.01, 0.005, 0.02, 0.01, 0.04, 0.905),
    "surname": (0.015, 0.005, 0.015, 0.01, 0.955),
    "dob": (0.002, 0.001, 0.005, 0.005, 0.987),
    "sex": (0.005, 0.995),
    "middle": (0.05, 0.02, 0.93),
    "location": (0.03, 0.01, 0.01, 0.01, 0.02, 0.92),
}
PRIOR_U: dict[str, tuple[float, ...]] = {
    "forename": (0.92, 0.05, 0.01, 0.005, 0.0001, 0.004, 0.01),
    "surname": (0.9, 0.05, 0.005, 0.005, 0.04),
    "dob": (0.9, 0.0997, 0.0002, 0.00005, 0.00005),
    "sex": (0.5, 0.5),
    "middle": (0.95, 0.02, 0.03),
    "location": (0.95, 0.04, 0.005, 0.0001, 0.0045, 0.0004),
}
U_PSEUDO = 200.0  # prior weight in random pairs
M_PSEUDO = 50.0  # prior weight in expected matches


@dataclass
class LinkModel:
    """A fitted model: per-comparison m and u by level, the prior, and name frequencies."""

    m: dict[str, np.ndarray]
    u: dict[str, np.ndarray]
    prior: float  # probability that a random left-right pair is a match
    frequencies: dict[str, dict[str, float]]  # comparison -> value -> share of records
    tf_floor: float
    learned: Learned = field(default_factory=Learned)  # from officers' review decisions

    def weights(self) -> dict[str, np.ndarray]:
        """log2(m / u) per comparison and level, in bits."""
        return {c: np.log2(self.m[c] / self.u[c]) for c in COMPARISONS}

    @property
    def prior_weight(self) -> float:
        """The prior as a match weight (bits)."""
        return float(np.log2(self.prior / (1.0 - self.prior)))


def _level_counts(gamma: np.ndarray, k: int, n_levels: int, weights: np.ndarray | None = None) -> np.ndarray:
    col = gamma[:, k]
    ok = col >= 0
    return np.bincount(col[ok], weights=None if weights is None else weights[ok], minlength=n_levels)


def _shrink(counts: np.ndarray, prior: tuple[float, ...], pseudo: float) -> np.ndarray:
    est = (counts + pseudo * np.asarray(prior)) / (counts.sum() + pseudo)
    return np.clip(est, 1e-9, None)


def estimate_u(L: Any, R: Any, config: LinkConfig,
               compare_pairs: Callable[..., np.ndarray] = compare) -> dict[str, np.ndarray]:
    """u-probabilities from random pairs (all pairs when there are fewer than ``u_sample``).

    ``compare_pairs`` gives the pairs' levels: the pipeline's (``Prepared`` sides, the default) or the
    general profile's (``general.compare`` on its own prepared sides); the levels are the same.
    """
    rng = np.random.default_rng(config.seed)
    total = len(L) * len(R)
    if total <= config.u_sample:
        li, ri = np.divmod(np.arange(total, dtype=np.int64), max(len(R), 1))
    else:
        li = rng.integers(0, len(L), config.u_sample)
        ri = rng.integers(0, len(R), config.u_sample)
    gamma = compare_pairs(L, R, li, ri, config.workers)
    return {
        c: _shrink(_level_counts(gamma, k, len(LEVELS[c])), PRIOR_U[c], U_PSEUDO)
        for k, c in enumerate(COMPARISONS)
    }


def _session_pairs(
    L: Prepared, R: Prepared, left_key: np.ndarray, right_key: np.ndarray, config: LinkConfig, salt: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """All pairs agreeing on a key, for a random subset of left records (about ``em_sample``).

    Returns the pairs and the share of left records sampled.
    """
    left = pd.DataFrame({"k": left_key, "l": np.arange(len(L))})
    left = left[left["k"] != ""]
    right = pd.DataFrame({"k": right_key, "r": np.arange(len(R))})
    right = right[right["k"] != ""]
    sizes = right["k"].value_counts()
    per_left = left["k"].map(sizes).fillna(0).to_numpy()
    expected = per_left.sum()
    share = 1.0
    if expected > config.em_sample:
        share = config.em_sample / expected
        rng = np.random.default_rng([config.seed, salt])
        left = left[rng.random(len(left)) < share]
    joined = left.merge(right, on="k")
    return joined["l"].to_numpy(dtype=np.int64), joined["r"].to_numpy(dtype=np.int64), share


def _em(
    gamma: np.ndarray, u: dict[str, np.ndarray], trained: tuple[str, ...], config: LinkConfig
) -> tuple[dict[str, np.ndarray], float]:
    """EM for m of the ``trained`` comparisons with u fixed; returns (m, share of matches)."""
    m = {c: np.asarray(PRIOR_M[c], dtype=float) for c in trained}
    lam = 0.05
    index = {c: COMPARISONS.index(c) for c in trained}
    if len(gamma) == 0:
        return m, 0.0
    for _ in range(config.em_iterations):
        log_odds = np.full(len(gamma), np.log(lam / (1 - lam)))
        for c in trained:
            col = gamma[:, index[c]]
            ok = col >= 0
            log_odds[ok] += np.log(m[c][col[ok]]) - np.log(u[c][col[ok]])
        p = 1.0 / (1.0 + np.exp(-np.clip(log_odds, -700, 700)))
        new_lam = float(np.clip(p.mean(), 1e-9, 1 - 1e-9))
        new_m = {
            c: _shrink(_level_counts(gamma, index[c], len(LEVELS[c]), p), PRIOR_M[c], M_PSEUDO)
            for c in trained
        }
        delta = max(float(np.abs(new_m[c] - m[c]).max()) for c in trained)
        m, lam = new_m, new_lam
        if delta < 1e-4:
            break
    return m, lam


def _frequencies(L: Prepared, R: Prepared) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for comparison, attr in (("forename", "forename"), ("surname", "surname")):
        values = pd.Series(np.concatenate([getattr(L, attr), getattr(R, attr)]))
        values = values[values != ""]
        shares = values.value_counts() / max(len(values), 1)
        out[comparison] = {str(k): float(v) for k, v in shares.items()}
    return out


def fit(L: Prepared, R: Prepared, config: LinkConfig, decisions: pd.DataFrame | None = None) -> LinkModel:
    """Estimate u, m and the prior from the two sides, and learn from stored review decisions.

    Args:
        L: left features.
        R: right features.
        config: sample sizes, iterations and seed.
        decisions: officers' earlier review decisions (``schemas.DECIDED_PAIR`` columns), or None;
            they become ``LinkModel.learned`` (see ``learn``).
    """
    u = estimate_u(L, R, config)
    # Session A: same date of birth; trains everything but dob.
    li, ri, share = _session_pairs(L, R, L.dob_text, R.dob_text, config, 1)
    gamma_a = compare(L, R, li, ri, config.workers)
    trained_a = ("forename", "surname", "sex", "middle", "location")
    m_a, lam_a = _em(gamma_a, u, trained_a, config)
    # Session B: same forename and surname; trains everything but the names.
    lkey = np.where((L.forename != "") & (L.surname != ""), L.forename + "|" + L.surname, "")
    rkey = np.where((R.forename != "") & (R.surname != ""), R.forename + "|" + R.surname, "")
    li_b, ri_b, _ = _session_pairs(L, R, lkey, rkey, config, 2)
    gamma_b = compare(L, R, li_b, ri_b, config.workers)
    m_b, _ = _em(gamma_b, u, ("dob", "sex", "middle", "location"), config)
    # Twins agree on every field but the forename (and about 3% of children are twins), so EM
    # takes twin pairs for matches with a "forename: other" disagreement: on the simulator it
    # estimates that level's m at 0.030 against a true 0.004. Letting that stand would make a
    # forename disagreement almost free, which is exactly what separates twins; so that level's
    # m is held at or below its prior guess.
    m_a["forename"][0] = min(m_a["forename"][0], PRIOR_M["forename"][0])
    m_a["forename"] = m_a["forename"] / m_a["forename"].sum()
    model = combine_sessions(L, R, u, m_a, m_b, lam_a * len(gamma_a) / share)
    return replace(model, learned=learn(decisions))


def combine_sessions(
    L: Prepared, R: Prepared, u: dict[str, np.ndarray], m_a: dict[str, np.ndarray], m_b: dict[str, np.ndarray],
    session_a_matches: float,
) -> LinkModel:
    """The model from the two EM sessions: names from A (same dob), dob from B (same names), the
    rest their mean; the prior from session A's matches over all left records (``session_a_matches``).
    """
    m = {
        "forename": m_a["forename"],
        "surname": m_a["surname"],
        "dob": m_b["dob"],
        **{c: (m_a[c] + m_b[c]) / 2 for c in ("sex", "middle", "location")},
    }
    # Matches expected overall: session A's matches, scaled up by the left records not sampled
    # (done by the caller) and by the share of true matches that agree on dob exactly.
    expected = session_a_matches / float(m["dob"][-1])
    expected = float(np.clip(expected, 1.0, max(min(len(L), len(R)), 1)))
    prior = expected / max(len(L) * len(R), 1)
    prior = float(np.clip(prior, 1e-12, 0.5))
    n_records = len(L) + len(R)
    return LinkModel(m, u, prior, _frequencies(L, R), tf_floor=1.0 / max(n_records, 1))


def score(
    model: LinkModel, L: Prepared, R: Prepared, li: np.ndarray, ri: np.ndarray, gamma: np.ndarray,
    term_frequency: bool = True,
) -> np.ndarray:
    """Match weights (bits) per pair: prior + per-comparison weights, names TF-adjusted."""
    return contributions(model, L, R, li, ri, gamma, term_frequency).sum(axis=1) + model.prior_weight


def contributions(
    model: LinkModel, L: Prepared, R: Prepared, li: np.ndarray, ri: np.ndarray, gamma: np.ndarray,
    term_frequency: bool = True,
) -> np.ndarray:
    """(n_pairs, n_comparisons) weights in bits; null levels weigh 0."""
    weights = model.weights()
    out = np.zeros(gamma.shape, dtype=float)
    for k, c in enumerate(COMPARISONS):
        col = gamma[:, k]
        ok = col >= 0
        out[ok, k] = weights[c][col[ok]]
        if term_frequency and c in TF_LEVELS:
            exact = col == TF_LEVELS[c]
            if exact.any():
                values = getattr(R, c)[ri[exact]]
                freq = pd.Series(values).map(model.frequencies[c]).fillna(model.tf_floor).to_numpy()
                freq = np.maximum(freq, model.tf_floor)
                out[exact, k] = np.log2(model.m[c][TF_LEVELS[c]] / freq)
    return out


def probability(weight: np.ndarray) -> np.ndarray:
    """Match probability from a match weight in bits."""
    return 1.0 / (1.0 + np.exp2(-np.clip(weight, -1000, 1000)))
