"""Moves between LAs (the 28-day rule): a child retained by one LA who is on another LA's later
GP extract now lives there.

Each LA sends, for its unmatched retained children, a keyed tag of the NHS number (made under the
check's secret, ``crypto.clk.TokenHasher.tags``: unique per child, so nothing to count, and no use
once the secret is destroyed) and the extract day of the delivery it came from. The linkage unit
pairs equal tags of two LAs: the record from the earlier delivery belongs to a child who has since
moved to the LA of the later one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def moved_to(tags: np.ndarray, party: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Records whose child is on another party's later delivery: (their indices, that party).

    Args:
        tags: a tag per record (b"" for none).
        party: the LA index of each record.
        day: the extract day of each record's delivery (larger is later).
    """
    frame = pd.DataFrame({"tag": tags, "party": party, "day": day, "row": np.arange(len(tags))})
    frame = frame[frame["tag"] != b""]
    pairs = frame.merge(frame, on="tag", suffixes=("", "_later"))
    pairs = pairs[(pairs["party"] != pairs["party_later"]) & (pairs["day_later"] > pairs["day"])]
    latest = pairs.sort_values("day_later").drop_duplicates("row", keep="last")  # the latest LA holds it now
    return latest["row"].to_numpy(dtype=np.int64), latest["party_later"].to_numpy(dtype=np.int64)
