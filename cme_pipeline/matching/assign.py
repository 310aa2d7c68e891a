"""One-to-one assignment: each left and each right record in at most one accepted pair.

Greedy by descending probability, which is what clerical practice does (take the surest pair,
strike both records, repeat) and what keeps twins apart: twin A's own record scores above twin
B's, so A takes it and B's record is left for B. Implemented as rounds of "mutual best" pairs,
which accept exactly what the greedy loop would, but vectorised: a pair is accepted in a round
when it is the best remaining pair of both its records; a few rounds clear any realistic input.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def one_to_one(left: np.ndarray, right: np.ndarray, score: np.ndarray) -> np.ndarray:
    """A boolean mask of the pairs accepted by greedy one-to-one assignment.

    Ties are broken by row order (left, then right) so the result is deterministic.

    Args:
        left: left row of each pair.
        right: right row of each pair.
        score: the pair's match weight or probability (higher is surer).
    """
    n = len(left)
    accepted = np.zeros(n, dtype=bool)
    if n == 0:
        return accepted
    order = np.lexsort((right, left, -score))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        frame = pd.DataFrame({"l": left[idx], "r": right[idx], "rank": rank[idx]})
        best_left = frame.groupby("l")["rank"].transform("min").to_numpy()
        best_right = frame.groupby("r")["rank"].transform("min").to_numpy()
        take = idx[(rank[idx] == best_left) & (rank[idx] == best_right)]
        accepted[take] = True
        used_left = np.isin(left[idx], left[take])
        used_right = np.isin(right[idx], right[take])
        alive[idx[used_left | used_right]] = False
    return accepted
