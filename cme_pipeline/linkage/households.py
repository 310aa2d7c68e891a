"""Households as evidence at the linkage unit: a family that moved is found together.

A child who moved from LA B to LA A since B's census carries another postcode on B's register, so
names, date of birth and sex are all that agree, which is also all a namesake born the same day
agrees on. A family moves together, though: when two children at one address on A's list agree
with two different records at one address on B's register, a move explains it and a coincidence
of two namesakes does not. This is group linkage (On, Koudas, Lee and Srivastava 2007, "Group
linkage"; for households, Fu, Christen and Zhou 2014, "A graph matching method for historical
census household linkage"), kept to what the unit needs: each LA labels the records it sends
with a household label of its own (addresses never leave the LA), random for each check, so the
unit learns which of one LA's records share an address and nothing about the address itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cme_pipeline.matching.normalise import address_parts, as_text, map_unique, postcode_parts

NO_HOUSEHOLD = -1  # a record with no address (a restricted child) is never part of a household


def household_labels(address: pd.Series | list[str] | None, postcode: pd.Series | list[str] | None,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """One label per record, equal for records at one address, random for each check.

    Args:
        address: one-line addresses (a register's ``address``, or a GP extract's first line).
        postcode: their postcodes (the same length).
        rng: randomness for the labels (default: fresh from the OS).
    """
    pc = pd.Series(postcode if postcode is not None else [], dtype=object)
    n = len(pc)
    line = map_unique(as_text(None if address is None else pd.Series(address, dtype=object), n),
                      lambda a: address_parts(a)[1])
    full = map_unique(as_text(pc, n), lambda p: postcode_parts(p)[0])
    keys = np.where((line != "") & (full != ""), full + "|" + line, "")
    codes, uniques = pd.factorize(keys)
    shuffled = (rng or np.random.default_rng()).permutation(len(uniques)).astype(np.int64)
    labels = shuffled[codes]
    labels[keys == ""] = NO_HOUSEHOLD
    return labels


def households_found(query: np.ndarray, target: np.ndarray, dice: np.ndarray, query_group: np.ndarray,
                     target_group: np.ndarray, strong: float) -> np.ndarray:
    """Which candidate pairs two households confirm: a mask over the pairs.

    A pair (query, target) is confirmed when, between the query's household and the target's, the
    pairs given hold at least two different queries and two different targets (two children of one
    address agree with two records of one address: two such pairs that share no record always
    exist then, since a set of pairs with no two disjoint ones all share one record), and one of
    them at Dice ``strong`` or more (one child agrees on name and date of birth). Without that,
    two brothers and two unrelated brothers of the same surname born in the same years agree
    weakly, pair by pair, and a household of children on no register was confirmed (seed 20260901).

    Args:
        query: query index of each candidate pair (pairs already above the unit's household threshold).
        target: target index of each pair.
        dice: Dice of each pair.
        query_group: household of each query (unique across LAs; ``NO_HOUSEHOLD`` for none).
        target_group: household of each target (unique across LAs; ``NO_HOUSEHOLD`` for none).
        strong: the Dice one pair of the two households must reach.
    """
    qg, tg = query_group[query], target_group[target]
    ok = (qg != NO_HOUSEHOLD) & (tg != NO_HOUSEHOLD)
    if not ok.any():
        return ok
    pairs = pd.DataFrame({"qg": qg[ok], "tg": tg[ok], "q": query[ok], "t": target[ok], "d": dice[ok]})
    size = pairs.groupby(["qg", "tg"]).agg(queries=("q", "nunique"), targets=("t", "nunique"), best=("d", "max"))
    both = size[(size["queries"] >= 2) & (size["targets"] >= 2) & (size["best"] >= strong)].index
    confirmed = pd.MultiIndex.from_arrays([qg[ok], tg[ok]]).isin(both)
    out = np.zeros(len(query), dtype=bool)
    out[np.flatnonzero(ok)[confirmed]] = True
    return out
