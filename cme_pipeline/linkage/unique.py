"""Unrivalled pairs at the linkage unit: a child and a register record that only have each other.

A child who moved alone since another LA's census agrees with its record there on names, date of
birth and sex, not on the postcode, and so does a namesake born the same day. Many of the
namesakes that made such pairs unsafe have a rival, though: the register record's own child is on
some LA's list too and agrees with it better (a child schooled across the border, with its home
postcode), or the child agrees about as well with a second record. So a pair can count as found
from a lower Dice (``check_round``'s ``unique_threshold``) when it is the best pair of its query,
and beats every other pair of that query and every other query's pair with that register record by
``unit.UNIQUE_MARGIN`` or more. Off by default (``unit.DEFAULT_UNIQUE_THRESHOLD`` is None): on one
simulated seed a namesake on no register had such a pair at Dice 0.869, so no threshold under the
0.88 that removes on Dice alone is safe yet (docs/cross-la.md).

This is the one-to-one constraint of record linkage (Fellegi and Sunter 1969 assume it; Jaro 1989
solves it as an assignment), kept to what the unit sees: Dice between encodings, no identity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def unrivalled(query: np.ndarray, target: np.ndarray, dice: np.ndarray, best: np.ndarray,
               best_target: np.ndarray, margin: float, floor: float = 0.0) -> np.ndarray:
    """Which queries' best pair beats every rival by ``margin``: a mask over the queries.

    Rivals are the other pairs given (the unit's candidate pairs from its household threshold,
    possibly listed more than once): the query's pairs with another target, and the best target's
    pairs with another query. A query with no best target (``best_target`` -1) is never unrivalled.

    Args:
        query: query index of each candidate pair.
        target: target index of each pair.
        dice: Dice of each pair.
        best: each query's best Dice.
        best_target: each query's best target (-1 for none).
        margin: how far above every rival the best pair must be.
        floor: only queries whose best Dice is at least this are judged (the others are False);
            pairs under ``floor - margin`` cannot rival them and are dropped first (most pairs).
    """
    n = len(best)
    has = (best_target >= 0) & (best >= floor)
    if not has.any():
        return np.zeros(n, dtype=bool)
    keep = dice >= floor - margin
    pairs = pd.DataFrame({"q": query[keep], "t": target[keep], "d": dice[keep]})
    # the query's other targets
    other_t = pairs[pairs["t"].to_numpy() != best_target[pairs["q"].to_numpy()]]
    rival_q = np.zeros(n)
    if len(other_t):
        top = other_t.groupby("q")["d"].max()
        rival_q[top.index.to_numpy()] = top.to_numpy()
    # the best target's other queries: per target, its two best distinct queries
    per_t = pairs.sort_values("d", ascending=False).drop_duplicates(["t", "q"])
    first = per_t.drop_duplicates("t").set_index("t")
    second = per_t[~per_t.index.isin(per_t.drop_duplicates("t").index)].drop_duplicates("t").set_index("t")
    q_idx = np.flatnonzero(has)
    bt = best_target[q_idx]
    first_q = first["q"].reindex(bt).fillna(-1).to_numpy().astype(np.int64)
    first_d = first["d"].reindex(bt).fillna(0.0).to_numpy()
    second_d = second["d"].reindex(bt).fillna(0.0).to_numpy()
    rival_t = np.zeros(n)
    rival_t[q_idx] = np.where(first_q == q_idx, second_d, first_d)
    out = np.zeros(n, dtype=bool)
    out[q_idx] = best[q_idx] - np.maximum(rival_q[q_idx], rival_t[q_idx]) >= margin
    return out
