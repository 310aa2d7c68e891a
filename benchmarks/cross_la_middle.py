"""Calibration: the second encoding, without the postcode, for the records that have a middle name.

A child who moved alone since another LA's census differs from its record there only in the
postcode, as does a namesake born the same day. When both have a (non-empty) middle name, a second
encoding of names, middle name, date of birth and sex (no postcode bigrams) agrees almost fully for
the child who moved and rarely for a namesake. This measures how many more children it finds and
how many children on no register it would remove, on top of the check without it, for three
variants (the last is ``linkage.middle``'s) and several thresholds: the calibration of
``DEFAULT_MIDDLE_THRESHOLD``.

Reads the frames ``benchmarks/cross_la.py --cache`` prepared; for each of ``--secrets`` fresh
secrets: the default check (households on), then each variant of the second encoding linked on
its own (only records with a middle name on both sides), and from several thresholds the share of
the lists truly on no Welsh register and the children on no register removed
(docs/cross-la.md, "Telling a child who moved from a namesake").

    .venv/bin/python benchmarks/cross_la_middle.py --cache /tmp/cla/prep20261001.pkl [--secrets 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from cross_la import by_party

from cme_pipeline.crypto.clk import (
    create_round_secret,
    destroy_round_secret,
    token_hasher,
)
from cme_pipeline.home import open_keystore
from cme_pipeline.linkage import (
    DEFAULT_THRESHOLD,
    MIDDLE_ENCODING,
    ClkConfig,
    household_labels,
    link_encodings,
)
from cme_pipeline.linkage.middle import MIDDLE_CONFIG, has_middle

# Second encodings: no postcode bigrams (and no random bits for a missing one); the middle name
# weighted as in the earlier experiment; the postcode area (CF, NP) as one whole token.
VARIANTS = {
    "no postcode": ClkConfig(k_postcode=0, missing_postcode_random=False),
    "no postcode, middle 12": ClkConfig(k_postcode=0, missing_postcode_random=False, k_middle=12),
    "no postcode, middle 12, area 20 (linkage.middle)": MIDDLE_CONFIG,
}
THRESHOLDS = (0.78, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92)


def one_secret(queries: pd.DataFrame, targets: pd.DataFrame, k: int) -> None:
    """The check without the second encoding, and each second encoding, under one fresh secret;
    print the figures."""
    none = ((queries["other_la"] == "") & ~queries["own_register"]).to_numpy()
    q_mid, t_mid = has_middle(queries), has_middle(targets)
    keys = open_keystore(f"file:{tempfile.mkdtemp()}")
    create_round_secret(keys, f"middle{k}")
    hasher, other = token_hasher(keys, f"middle{k}"), token_hasher(keys, f"middle{k}", MIDDLE_ENCODING)
    first = by_party(queries, hasher), by_party(targets, hasher)
    second = {name: (by_party(queries[q_mid], other, cfg), by_party(targets[t_mid], other, cfg))
              for name, cfg in VARIANTS.items()}
    destroy_round_secret(keys, f"middle{k}")
    groups = [np.concatenate([household_labels(g["address"], g["postcode"]) for _, g in f.groupby("party", sort=False)])
              for f in (queries, targets)]
    found = link_encodings(first[0], queries["party"].to_numpy(), first[1], targets["party"].to_numpy(),
                           threshold=DEFAULT_THRESHOLD, query_group=groups[0], target_group=groups[1])
    base = np.zeros(len(queries), dtype=bool)
    base[found.query[found.confirmed(DEFAULT_THRESHOLD)]] = True
    print(f"secret {k}: the check without the second encoding: share truly on no register after {none[~base].mean():.4f}, "
          f"{int((base & none).sum())} on no register removed")
    q_idx = np.flatnonzero(q_mid)
    for name, (q2, t2) in second.items():
        f2 = link_encodings(q2, queries["party"].to_numpy()[q_mid], t2, targets["party"].to_numpy()[t_mid],
                            threshold=min(THRESHOLDS) - 0.02)
        best = np.zeros(len(queries))
        best[q_idx[f2.query]] = f2.dice
        cells = []
        for th in THRESHOLDS:
            hit = base | (best >= th)
            cells.append(f"from {th:.2f} {none[~hit].mean():.4f} ({int((hit & none).sum())})")
        top = np.round(np.sort(best[none & ~base])[-3:], 3).tolist()
        print(f"  {name}: best of a child on no register {top}; share after (on no register removed): "
              + ", ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, required=True, help="frames benchmarks/cross_la.py --cache wrote")
    parser.add_argument("--secrets", type=int, default=3)
    args = parser.parse_args()
    queries, targets = pd.read_pickle(args.cache)
    print(f"{len(queries)} children on the lists ({(queries['middle_names'].fillna('') != '').mean():.3f} with a "
          f"middle name), {len(targets)} register records")
    for k in range(args.secrets):
        one_secret(queries, targets, k)


if __name__ == "__main__":
    main()
