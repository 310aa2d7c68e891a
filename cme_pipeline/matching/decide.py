"""The pipeline's decision: a child's pair is a ``match`` when the one-to-one assignment makes it
near certain, not merely when the pair alone scores high and nothing else is near.

``link`` bands each pair by its own Fellegi-Sunter probability and sends it to review whenever a
rival of either record comes within ``ambiguity_bits``. At all-Wales scale rivals are everywhere
(siblings, namesakes, the other twin), and most of them are already claimed by a stronger owner.
``match_registers`` decides instead by the pair's probability *given the rest of the assignment*,
as in the bipartite-matching model of Sadinle (2017, "Bayesian estimation of bipartite matchings
for record linkage", JASA 112:600-612). With ``M`` matches expected between ``nL`` left and
``nR`` right records, the odds that left record ``l`` is right record ``r`` (rather than on no
record at all) are the pair's Bayes factor times ``M / ((nL - M)(nR - M))``; against its rivals,

    P(l = r) = o(l, r) / (1 + o(l, r) + sum of the rivals' odds, for l and for r)

A rival whose other record the assignment gave to someone else competes only as the swap it
implies (see ``assignment_probability``): twin A's cross pair with twin B's register record
stops competing once B's own, much stronger pair holds that record, while two children whose
records could be exchanged at little cost stay ambiguous. A rival that nobody else claims (a
missing twin, a namesake off every register, a second register record of the same child)
counts in full, so genuine ambiguity still goes to a person. A missing child's own pair must carry its Bayes factor alone against
"on no record", and guarded twin pairs (``twins``) are never matched.

Why this is safe for missing children: the correction ``M / ((nL - M)(nR - M))`` over the
pairwise prior ``M / (nL nR)`` is ``1 / ((1 - M/nL)(1 - M/nR))``: the information that almost
every child on the extract is on the census and almost every census record is on the extract.
It is capped (``MAX_SHARE``) so that a generous EM estimate of ``M`` cannot inflate it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cme_pipeline.matching.assign import one_to_one
from cme_pipeline.matching.model import LinkModel, probability

# Neither side's matched share is taken above this when correcting the prior: at most
# log2(1 / 0.05**2) = 8.6 bits, whatever EM says.
MAX_SHARE = 0.95


def assignment_bits(model: LinkModel, n_left: int, n_right: int) -> float:
    """Bits added to a pair's weight by the one-to-one prior (``-log2((1-πL)(1-πR))``)."""
    expected = model.prior * n_left * n_right
    share_left = min(expected / max(n_left, 1), MAX_SHARE)
    share_right = min(expected / max(n_right, 1), MAX_SHARE)
    return float(-np.log2(1.0 - share_left) - np.log2(1.0 - share_right))


def _group_sum(key: np.ndarray, value: np.ndarray) -> np.ndarray:
    """For each entry, the sum of ``value`` over all entries sharing its ``key``."""
    return pd.Series(value).groupby(key).transform("sum").to_numpy()


def _lookup(keys: pd.Index, values: np.ndarray, left: np.ndarray, right: np.ndarray, width: int) -> np.ndarray:
    """``values`` of the pairs (left, right); -inf where there is no such pair (or a row is -1)."""
    at = keys.get_indexer(left.astype(np.int64) * width + right)
    return np.where((at >= 0) & (left >= 0) & (right >= 0), values[np.maximum(at, 0)], -np.inf)


def assignment_probability(
    li: np.ndarray, ri: np.ndarray, weight: np.ndarray, guard: np.ndarray, bits: float
) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one assignment and each assigned pair's probability given it.

    A rival ``(l, r2)`` of an assigned pair ``(l, r)`` whose record ``r2`` went to ``(l2, r2)``
    competes only as the swap it implies (l takes r2, l2 takes r or nothing):
    ``o(l, r2) * (1 + o(l2, r)) / o(l2, r2)``. So a twin's cross pair stops counting once the
    other twin's own, stronger pair holds the record, while two children whose records could
    be exchanged at little cost stay ambiguous. A rival whose other record nobody holds counts
    in full. The same holds for rivals of ``r``.

    Args:
        li: left row of each pair.
        ri: right row of each pair.
        weight: the pair's match weight (bits, prior included).
        guard: pairs the twin guard keeps out of the assignment.
        bits: ``assignment_bits`` for these two sides.

    Returns:
        (accepted, probability): the pairs one-to-one assignment takes, and for each of them its
        probability against "on no record" and its rivals (0 for pairs not taken).
    """
    n = len(li)
    accepted = np.zeros(n, dtype=bool)
    if n == 0:
        return accepted, np.empty(0)
    accepted[~guard] = one_to_one(li[~guard], ri[~guard], weight[~guard])
    # In bits (log2 odds), clipped so that sums of odds stay finite.
    own = np.clip(weight + bits, -500.0, 500.0)
    width = int(max(li.max(), ri.max())) + 1
    keys = pd.Index(li.astype(np.int64) * width + ri)
    # For every pair, the partner the assignment gave its left row and its right row (-1: none).
    l_partner = pd.Series(ri[accepted], index=li[accepted]).reindex(li).fillna(-1).to_numpy(dtype=np.int64)
    r_partner = pd.Series(li[accepted], index=ri[accepted]).reindex(ri).fillna(-1).to_numpy(dtype=np.int64)
    rival = ~accepted
    # o(l2, r) for a left rival (l, r2) [l2 holds r2, l holds r]; o(l1, r2) for a right rival
    # (l', r) [l1 holds r, l' holds r2]: the same lookup, (r_partner, l_partner).
    crossed = np.logaddexp2(0.0, _lookup(keys, own, r_partner, l_partner, width))
    # As a rival of l's pair: the swap with r2's holder, or its full odds when r2 is free.
    held = _lookup(keys, own, r_partner, ri, width)
    against_left = np.where(np.isfinite(held), own + crossed - held, own)
    # As a rival of r's pair: the swap with l's own partner r2, or full odds when l is free.
    held = _lookup(keys, own, li, l_partner, width)
    against_right = np.where(np.isfinite(held), own + crossed - held, own)
    odds = np.exp2(own)
    against_left = np.where(rival, np.exp2(np.clip(against_left, -500.0, 500.0)), 0.0)
    against_right = np.where(rival, np.exp2(np.clip(against_right, -500.0, 500.0)), 0.0)
    # An assigned pair's rivals are the pairs not assigned that share its left or its right row.
    p = odds / (1.0 + odds + _group_sum(li, against_left) + _group_sum(ri, against_right))
    return accepted, np.where(accepted, p, 0.0)


def bands(
    li: np.ndarray, ri: np.ndarray, weight: np.ndarray, guard: np.ndarray, bits: float,
    match_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``match`` for assigned, unguarded pairs whose assignment probability reaches
    ``match_threshold``; ``possible`` for the rest (every pair given is already at or above the
    possible threshold). Returns the bands and the probability reported for each pair: the assignment
    probability for a match, the pair's own probability otherwise.
    """
    accepted, p_assigned = assignment_probability(li, ri, weight, guard, bits)
    match = accepted & ~guard & (p_assigned >= match_threshold)
    reported = np.where(match, p_assigned, probability(weight))
    return np.where(match, "match", "possible"), reported
