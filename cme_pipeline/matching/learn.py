"""Learning from the officer's review decisions: agreement patterns a person keeps rejecting stop
going to review.

What the officer decided is kept as the pair's *agreement pattern* (the level of each comparison:
forename "other", surname "exact", dob "within a year", ...) and the decision; nothing else
(``schemas.DECIDED_PAIR``). The next fit (``model.fit``) turns the stored decisions into, per
pattern, the rate at which a pair the model sent to review with that pattern was the same child,
and the pipeline's decision step (``linker``) applies it to exactly that population: pairs its
assignment decision leaves in the ``possible`` band.

Why this estimator, and not re-estimated m and u:

- Reviewed pairs are a selected sample: the pairs the model could not decide (siblings, a missing
  twin against the other twin's record, namesakes). Pseudo-counts on m and u, or their posteriors
  fixed in a semi-supervised EM, would carry that selection into every pair's weight, auto-matched
  ones included; and with u estimated from random pairs, a "not the same" decision does not move
  m at all, while most reviewed pairs are exactly that. dedupe's active learning (Gregg and Eder,
  ``dedupe``: a regularised logistic regression on the labelled pairs' comparison vectors) learns
  from labelled pairs what separates them; we keep the Fellegi-Sunter model for everything else
  and learn, per agreement pattern, only the review band's same-child rate: a beta-binomial with
  a uniform Beta(1, 1) prior (Laplace's rule of succession; Gelman et al., *Bayesian Data
  Analysis*, 3rd ed., ch. 2), estimated and applied on the same population, so no selection bias.
- Learning never matches anyone. A pattern is *cleared* when its posterior mean same-child rate
  is at most ``CLEAR_AT``; a cleared pair leaves the ``possible`` band after the decision step has
  banded every pair, so it can neither become a match nor stop counting as a rival. Its child goes
  to follow-up (``unmatched``, a person still sees them) unless another candidate keeps them in
  review. No missing child can be matched, and no twin, because of a decision. Auto-matching from
  decisions would need a pattern's rate at the match band's precision (0.999): a thousand
  unanimous decisions per pattern at the least, and one wrong click would undo it.
- A cleared pattern keeps being checked: one pair in ``AUDIT_EVERY`` of it stays in review (an
  audit sample, fixed by the pair's record ids so a re-run decides alike). Without it a cleared
  pattern would get no decisions any more and could never come back if the registers or the
  data changed; with it, officers' "same child" answers on the sample lift the pattern's rate
  above ``CLEAR_AT`` again and its pairs return to review.
- Weighting: every decision counts once, all runs pooled, against the Beta(1, 1) prior. Clearing
  a pattern needs at least ``1 / CLEAR_AT - 2`` = 18 decisions of it, all "not the same",
  and 19 more for every "same" among them: a handful of wrong "not the same" clicks cannot clear
  a pattern, and a wrong "same" only delays clearing one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cme_pipeline.matching.compare import COMPARISONS, compare
from cme_pipeline.matching.prepare import prepare
from cme_pipeline.schemas import DECIDED_PAIR, DECISION_PATTERN

# A pattern whose posterior mean same-child rate is at most this leaves the review band. At 5%,
# sending a cleared pattern's pairs to follow-up costs the officer at most about one enquiry into a
# registered child per 20 reviews saved, and the follow-up finds that child on the register.
CLEAR_AT = 0.05
# One cleared pair in this many stays in review: a cleared pattern keeps being decided.
AUDIT_EVERY = 20
PRIOR_SAME = 1.0  # Beta(1, 1): no pattern is presumed either way before it is decided
PRIOR_NOT_SAME = 1.0
_RADIX = 8  # levels (-1 .. 6) + 1 fit in 3 bits
assert COMPARISONS == DECISION_PATTERN, "the stored decision pattern must follow compare.LEVELS"


def _keys(patterns: np.ndarray) -> np.ndarray:
    """One integer per pattern row (levels -1..6 in base 8)."""
    powers = _RADIX ** np.arange(patterns.shape[1], dtype=np.int64)
    return ((patterns.astype(np.int64) + 1) * powers).sum(axis=1)


@dataclass(frozen=True)
class Learned:
    """What the stored decisions say, per agreement pattern: counts of same / not-same decisions."""

    counts: dict[tuple[int, ...], tuple[int, int]] = field(default_factory=dict)

    @property
    def decisions(self) -> int:
        """How many decisions the estimate rests on."""
        return sum(same + other for same, other in self.counts.values())

    def same_rate(self, pattern: tuple[int, ...]) -> float:
        """Posterior mean rate at which a review pair with this pattern is the same child."""
        same, other = self.counts.get(tuple(pattern), (0, 0))
        return (PRIOR_SAME + same) / (PRIOR_SAME + PRIOR_NOT_SAME + same + other)

    @property
    def cleared(self) -> frozenset[tuple[int, ...]]:
        """Patterns whose review pairs leave the ``possible`` band."""
        return frozenset(p for p in self.counts if self.same_rate(p) <= CLEAR_AT)

    def clears(self, gamma: np.ndarray) -> np.ndarray:
        """Which pairs (rows of ``compare``'s level matrix) have a cleared pattern."""
        cleared = self.cleared
        if not cleared or len(gamma) == 0:
            return np.zeros(len(gamma), dtype=bool)
        return np.isin(_keys(gamma), _keys(np.array(sorted(cleared), dtype=np.int64)))


def audit_sample(left_ids: Sequence[str], right_ids: Sequence[str]) -> np.ndarray:
    """Which pairs stay in review although their pattern is cleared: about one in ``AUDIT_EVERY``.

    Chosen by a hash of the two record ids (references, never personal data), so the same
    delivery against the same registers samples the same pairs on every run and worker.
    """
    digests = (hashlib.blake2b(f"{left}\0{right}".encode(), digest_size=8).digest()
               for left, right in zip(left_ids, right_ids, strict=True))
    return np.fromiter((int.from_bytes(d, "big") % AUDIT_EVERY == 0 for d in digests), dtype=bool,
                       count=len(left_ids))


def learn(decisions: pd.DataFrame | None) -> Learned:
    """Count the decisions per agreement pattern.

    Args:
        decisions: ``schemas.DECIDED_PAIR`` columns (one level per comparison, ``same`` a bool),
            one row per decided pair; None or empty: nothing learned.

    Raises:
        ValueError: a column is missing (named; no value is shown).
    """
    if decisions is None or len(decisions) == 0:
        return Learned()
    missing = [c for c in DECIDED_PAIR if c not in decisions.columns]
    if missing:
        raise ValueError(f"decisions lack the column(s) {', '.join(missing)}")
    same = decisions["same"].astype(bool).to_numpy()
    levels = decisions[list(DECISION_PATTERN)].to_numpy(dtype=np.int64)
    frame = pd.DataFrame(levels, columns=list(DECISION_PATTERN)).assign(same=same, other=~same)
    grouped = frame.groupby(list(DECISION_PATTERN))[["same", "other"]].sum()
    return Learned({
        tuple(int(v) for v in pattern): (int(n_same), int(n_other))
        for pattern, n_same, n_other in zip(grouped.index, grouped["same"], grouped["other"], strict=True)
    })


def agreement_patterns(left: pd.DataFrame, right: pd.DataFrame, workers: int = 1) -> pd.DataFrame:
    """The agreement pattern of each row-aligned pair (row i of ``left`` with row i of ``right``).

    What the pipeline's model compares for that pair, as levels (``compare.LEVELS``, -1 missing);
    the result holds no value of either record.

    Args:
        left: canonical person columns (the health side, ``former_surname`` too if held).
        right: canonical person columns (the register side), as many rows as ``left``.
        workers: rapidfuzz threads.

    Returns:
        ``schemas.DECISION_PATTERN`` columns of ints, one row per pair.
    """
    if len(left) != len(right):
        raise ValueError("left and right must hold the same number of rows")
    L, R = prepare(left.reset_index(drop=True)), prepare(right.reset_index(drop=True))
    rows = np.arange(len(L), dtype=np.int64)
    gamma = compare(L, R, rows, rows, workers)
    return pd.DataFrame(gamma.astype(np.int64), columns=list(DECISION_PATTERN))
