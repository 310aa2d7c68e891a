"""Where the follow-up lists' children who are not truly missing come from, after the cross-LA check.

Reads the frames ``benchmarks/cross_la.py --cache`` prepared (each LA's unmatched children and the
register records its run did not match, with the simulator's truth), runs the check's encoding and
linkage once under a fresh secret, and sorts every child left on a list who is on some Welsh
register by why it was not removed:

- on its own LA's register but left unmatched by that LA's own matching;
- on another LA's register, but that record was matched by its LA's run to another child (so it
  is not encoded at all);
- on another LA's register and encoded: schooled across the border (same home address on both
  sides) or moved since the census (another postcode), with the register record's noise (name
  changed, date of birth error, middle name missing, postcode differs) and whether the child went to
  the note band, or whether its true pair reached the threshold but locality-sensitive hashing
  never compared it; for each, how many have a middle name (a second encoding, ``linkage.middle``)
  and how many moved between postcode areas (whose area token then disagrees).

Also counts exact namesakes (normalised forename, surname, date of birth, sex) between the
children on no register and the other LAs' encoded register records, per 10,000.

    .venv/bin/python benchmarks/cross_la_breakdown.py --cache /tmp/cla/prepwales.pkl
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from cross_la import middle_by_party, previous_by_party, rare_by_party

from cme_pipeline.crypto.clk import create_round_secret, destroy_round_secret, token_hasher
from cme_pipeline.home import open_keystore
from cme_pipeline.linkage import (
    DEFAULT_MIDDLE_THRESHOLD,
    DEFAULT_POSSIBLE_THRESHOLD,
    DEFAULT_RARE_THRESHOLD,
    DEFAULT_THRESHOLD,
    DEFAULT_UNIQUE_THRESHOLD,
    MIDDLE_ENCODING,
    encode,
    household_labels,
    link_encodings,
)
from cme_pipeline.linkage.middle import has_middle
from cme_pipeline.linkage.unit import with_previous
from cme_pipeline.matching.normalise import (
    as_text,
    given_key,
    map_unique,
    postcode_parts,
    surname_key,
)

PERSON = ["forename", "middle_names", "surname", "dob", "sex", "postcode"]
NAME_NOISE = ("forename_variant", "forename_typo", "name_swap", "surname_change", "surname_typo")
DOB_NOISE = ("dob_transposed", "dob_digit_slip")
POSTCODE_NOISE = ("moved_house", "missing_postcode")


def _keys(frame: pd.DataFrame) -> pd.DataFrame:
    n = len(frame)
    return pd.DataFrame({
        "forename": map_unique(as_text(frame["forename"], n), given_key),
        "middle": map_unique(as_text(frame["middle_names"], n), given_key),
        "surname": map_unique(as_text(frame["surname"], n), surname_key),
        "dob": as_text(frame["dob"], n),
        "sex": as_text(frame["sex"], n),
        "postcode": map_unique(as_text(frame["postcode"], n), lambda v: postcode_parts(v)[0]),
    })


def best_dice(queries: pd.DataFrame, targets: pd.DataFrame, households: bool,
              rare: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best Dice of each query at the linkage unit (the better of its two looks where it has a
    previous postcode), whether the check removes it (Dice or a household, its second encoding,
    or a name ``rare`` marks rare), and the Dice of each query's true register record at its
    current postcode (exact, no LSH; NaN when that record is not encoded)."""
    with tempfile.TemporaryDirectory() as keys_dir:
        keys = open_keystore(f"file:{keys_dir}")
        create_round_secret(keys, "breakdown")
        hasher = token_hasher(keys, "breakdown")
        q_clk, t_clk = encode(queries[PERSON], hasher), encode(targets[PERSON], hasher)
        middle = middle_by_party(queries, targets, token_hasher(keys, "breakdown", MIDDLE_ENCODING))
        previous = previous_by_party(queries, hasher)
        destroy_round_secret(keys, "breakdown")
    groups = {} if not households or "address" not in queries else {
        "query_group": np.concatenate([household_labels(g["address"], g["postcode"])
                                       for _, g in queries.groupby("party", sort=False)]),
        "target_group": np.concatenate([household_labels(g["address"], g["postcode"])
                                        for _, g in targets.groupby("party", sort=False)])}
    found = link_encodings(q_clk, queries["party"].to_numpy(), t_clk, targets["party"].to_numpy(), threshold=0.0,
                           **groups)
    if previous is not None:  # the second look at the previous postcode (linkage.previous)
        found = with_previous(found, previous.query_rows, link_encodings(
            previous.queries, queries["party"].to_numpy()[previous.query_rows], t_clk, targets["party"].to_numpy(),
            threshold=0.0, unique_margin=None))
    best = np.zeros(len(queries))
    best[found.query] = found.dice
    removed = np.zeros(len(queries), dtype=bool)
    removed[found.query[found.confirmed(DEFAULT_THRESHOLD, DEFAULT_UNIQUE_THRESHOLD)]] = True
    removed[found.query[rare[found.query] & (found.dice >= DEFAULT_RARE_THRESHOLD)]] = True
    second = link_encodings(middle.queries, queries["party"].to_numpy()[middle.query_rows], middle.targets,
                            middle.target_party, threshold=DEFAULT_MIDDLE_THRESHOLD, unique_margin=None)
    removed[middle.query_rows[second.query]] = True
    where = pd.Series(np.arange(len(targets)), index=targets["nhs_number"].to_numpy())
    where = where[where.index != ""]
    where = where[~where.index.duplicated()]
    true = np.full(len(queries), np.nan)
    has = queries["nhs_number"].isin(where.index).to_numpy() & (queries["other_la"] != "").to_numpy()
    qi, ti = np.flatnonzero(has), where.loc[queries.loc[has, "nhs_number"]].to_numpy()
    a, b = q_clk[qi], t_clk[ti]
    common = np.bitwise_count(a & b).sum(axis=1)
    true[qi] = 2 * common / (np.bitwise_count(a).sum(axis=1) + np.bitwise_count(b).sum(axis=1))
    return best, removed, true


def _area(postcodes: pd.Series) -> np.ndarray:
    """The letters a postcode's district starts with (``CF10`` -> ``CF``)."""
    return map_unique(as_text(postcodes, len(postcodes)), lambda v: postcode_parts(v)[2].rstrip("0123456789"))


def breakdown(queries: pd.DataFrame, targets: pd.DataFrame, households: bool = True) -> None:
    """Print the breakdown of the children left on the lists who are on some Welsh register."""
    rare = rare_by_party(queries, targets)  # linkage.rare, judged as benchmarks/cross_la.py does
    best, removed, true = best_dice(queries, targets, households, rare)
    cross = (queries["other_la"] != "").to_numpy()
    own = queries["own_register"].to_numpy()
    none = ~cross & ~own
    left = ~removed
    print(f"lists: {len(queries)} before, {int(left.sum())} after; on no register {int(none.sum())}; "
          f"share after {none[left].mean():.4f}; wrongly removed {int((removed & none).sum())}")
    print(f"left on the lists and on some Welsh register: {int((left & ~none).sum())}")
    print(f"  (b) on their own LA's register, unmatched by its own matching: {int((left & own).sum())}")
    noise = targets.drop_duplicates("nhs_number").set_index("nhs_number")["noise"]
    left_cross = queries.loc[left & cross].copy()
    left_cross["best"], left_cross["true"] = best[left & cross], true[left & cross]
    claimed = left_cross["true"].isna()
    print(f"  (a) on another LA's register: {len(left_cross)}")
    print(f"      its record matched by that LA's own run to another child (not encoded): {int(claimed.sum())}")
    enc = left_cross[~claimed].copy()
    enc["labels"] = enc["nhs_number"].map(noise).fillna("").str.split(";")
    enc["moved"] = enc["reason"] == "other_la:moved"
    band = (enc["best"] >= DEFAULT_POSSIBLE_THRESHOLD).to_numpy()
    lsh = (enc["true"] >= DEFAULT_THRESHOLD).to_numpy()
    print(f"      true pair at or above {DEFAULT_THRESHOLD} but never compared (LSH miss): {int(lsh.sum())}")
    size = queries.groupby("household")["household"].transform("size")
    enc["alone"] = size.loc[enc.index].to_numpy() == 1
    enc["middle"] = has_middle(enc)
    record = targets.drop_duplicates("nhs_number").set_index("nhs_number")["postcode"]
    enc["other_area"] = _area(enc["postcode"]) != _area(enc["nhs_number"].map(record))
    enc["common"] = ~rare[enc.index.to_numpy()]
    for moved, label in ((False, "schooled across the border"), (True, "moved since the census")):
        g = enc[(enc["moved"] == moved).to_numpy() & ~lsh]
        gband = (g["best"] >= DEFAULT_POSSIBLE_THRESHOLD).to_numpy()
        print(f"      {label}: {len(g)} (note band {int(gband.sum())}, below it {int((~gband).sum())}; "
              f"the only child of its household on the list: {int(g['alone'].sum())}, of whom with a middle "
              f"name {int((g['alone'] & g['middle']).sum())}, and of those in another postcode area there "
              f"{int((g['alone'] & g['middle'] & g['other_area']).sum())}; with names not rare here "
              f"(linkage.rare) {int(g['common'].sum())})")
        kinds: Counter[str] = Counter()
        for labels in g["labels"]:
            s = set(labels)
            kinds["name changed"] += bool(s & set(NAME_NOISE))
            kinds["dob error"] += bool(s & set(DOB_NOISE))
            kinds["middle name missing on the register"] += "missing_middle_names" in s
            kinds["postcode differs (register noise)"] += bool(s & set(POSTCODE_NOISE))
            kinds["no register noise"] += not (s - {"", "upper_case", "ascii_fold"})
        for kind, count in kinds.most_common():
            print(f"        {kind}: {count}")
        print(f"        true-pair Dice quartiles: {np.round(np.nanpercentile(g['true'], [25, 50, 75]), 3).tolist()}")
    print(f"  (c) sent to the note band [{DEFAULT_POSSIBLE_THRESHOLD}, {DEFAULT_THRESHOLD}): "
          f"{int(((best >= DEFAULT_POSSIBLE_THRESHOLD) & left & ~none).sum())} on some register "
          f"({int(band.sum())} of them on another LA's), "
          f"{int(((best >= DEFAULT_POSSIBLE_THRESHOLD) & left & none).sum())} on no register")
    namesakes(queries[none], targets)
    print(f"  of the children on no register, names rare here (linkage.rare): {rare[none].mean():.3f}")


def namesakes(children: pd.DataFrame, targets: pd.DataFrame) -> None:
    """Exact namesakes of the children on no register among the other LAs' encoded records."""
    q, t = _keys(children), _keys(targets)
    q["party"], t["party"] = children["party"].to_numpy(), targets["party"].to_numpy()
    q["row"] = np.arange(len(q))
    n = len(q)
    for fields in (["forename", "surname", "dob"], ["forename", "surname", "dob", "sex"],
                   ["forename", "middle", "surname", "dob", "sex"]):
        pairs = q.merge(t, on=fields, suffixes=("", "_t"))
        hit = pairs.loc[pairs["party"] != pairs["party_t"], "row"].nunique()
        print(f"  children on no register with a namesake on {'+'.join(fields)} on another LA's encoded "
              f"registers: {hit} ({hit / n * 1e4:.1f} per 10,000)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, required=True, help="frames prepared by benchmarks/cross_la.py")
    parser.add_argument("--no-households", action="store_true", help="the check as before households")
    args = parser.parse_args()
    queries, targets = pd.read_pickle(args.cache)
    breakdown(queries, targets, not args.no_households)


if __name__ == "__main__":
    main()
