"""Rare names: an LA's own evidence that names and date of birth agreeing mean the same child.

A pair whose names, date of birth and sex agree but whose postcode does not scores from about
0.74 to 0.85, below ``unit.DEFAULT_THRESHOLD``: a child who moved since the other LA's census, or
a namesake born the same day. When the child's surname and forename are both rare, a namesake born
the same day among the other LAs' encoded register records is improbable, so such a pair counts
as found from ``DEFAULT_RARE_THRESHOLD``. This is frequency-based matching (Winkler 1989,
"Frequency-based matching in Fellegi-Sunter model of record linkage"): agreement on a rare value
is stronger evidence than on a common one.

The LA judges rarity on its own register records, plaintext it holds anyway; nothing about it
crosses to the linkage unit, which compares the same encodings as before and answers the same
Dice. A name's share is ``(count + 1) / (records + 1)``: a name the registers do not hold counts
once, so a small LA's registers make names look commoner, never rarer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cme_pipeline.matching.normalise import given_key, map_unique, surname_key

# Calibrated on all-Wales simulations (benchmarks/cross_la.py, benchmarks/README.md): the best pair
# of a child on no register scored 0.765-0.786 on three seeds of the simulator's 2020 names; from
# 0.78 one such child with a rare name was removed on the held-out seed, from 0.80 none, on either
# names, under two secrets each.
DEFAULT_RARE_THRESHOLD = 0.80
# Surname share x forename share at or below which a name is rare: a child's expected namesakes
# born the same day, of its sex, among the about 9 encoded register records per day and sex of all
# of Wales, are then at most 3e-4. A Jones (5.4%) is rare only with a forename under 0.06% of the
# registers; a forename of 2% only with a surname under 0.15%. On the 1830s names (34 times as
# many namesakes) it removed no child on no register (1e-4 removed one; any name, ten).
RARE_NAME_SHARE = 3e-5


def rare_names(children: pd.DataFrame, population: pd.DataFrame, limit: float = RARE_NAME_SHARE) -> np.ndarray:
    """For each child, whether its surname's share times its forename's share is at most ``limit``.

    Args:
        children: records with ``forename`` and ``surname``.
        population: the LA's register records (``forename``, ``surname``): the name frequencies.
        limit: the largest product of the two shares that counts as rare.
    """
    if len(children) == 0:
        return np.zeros(0, dtype=bool)
    shares = []
    for column, key in (("surname", surname_key), ("forename", given_key)):
        known = pd.Series(map_unique(population[column].fillna("").to_numpy(dtype=object), key)).value_counts()
        mine = pd.Series(map_unique(children[column].fillna("").to_numpy(dtype=object), key))
        shares.append((mine.map(known).fillna(0).to_numpy(dtype=float) + 1) / (len(population) + 1))
    named = (children["surname"].fillna("") != "").to_numpy() & (children["forename"].fillna("") != "").to_numpy()
    return named & (shares[0] * shares[1] <= limit)
