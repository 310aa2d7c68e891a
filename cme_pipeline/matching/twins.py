"""The twin guard: a pair whose forenames disagree is never a ``match`` when twins are in play.

Twins share surname, date of birth and address, so every field but the forename agrees. Their
Fellegi-Sunter score across each other is high (the forename's disagreement, about -6.5 bits, is
outweighed by about +30 from the rest), and only one-to-one assignment keeps them apart, which
fails if one twin is off every register: the other twin's record is then the best candidate and
a missing child would be "matched" and deleted. So when either record of a pair has a
same-surname, same-dob, same-postcode (or address) sibling on its own side, a pair whose
forenames do not agree at least at the Jaro-Winkler 0.92 level (or as a full swap) stays in the
``possible`` band for a human to decide.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cme_pipeline.matching.prepare import Prepared

# Forename levels (compare.LEVELS["forename"]) below this are not agreement enough for twins.
MIN_TWIN_FORENAME_LEVEL = 3


def in_twin_group(p: Prepared) -> np.ndarray:
    """Whether each record shares dob, surname and postcode-or-address with another record."""
    out = np.zeros(len(p), dtype=bool)
    for place in (p.postcode, p.address):
        frame = pd.DataFrame({"dob": p.dob_text, "surname": p.surname, "place": place})
        usable = (frame != "").all(axis=1).to_numpy()
        dup = frame.duplicated(keep=False).to_numpy()
        out |= usable & dup
    return out


def guarded(
    left_twins: np.ndarray, right_twins: np.ndarray, li: np.ndarray, ri: np.ndarray, forename_level: np.ndarray
) -> np.ndarray:
    """Pairs the twin guard keeps out of the match band."""
    return (left_twins[li] | right_twins[ri]) & (forename_level < MIN_TWIN_FORENAME_LEVEL)
