"""Benchmark: the cross-LA check for all of Wales: time, memory, and what it does to follow-up lists.

1. Simulates every LA at full scale (about 440,000 children, the new default cross_la_rate) in
   memory and runs the real matcher per LA against its own registers, as each LA's run would:
   each LA's `unmatched` children are its follow-up list before the check.
2. Times the check's work (``--repeats`` times, a fresh shared secret in a real ``file:`` key
   store each time): every LA's unmatched children and every register record of every LA encoded
   (``linkage.encode``), and those with a middle name a second time (``linkage.middle``; not with
   ``--no-middle``), then compared at the linkage unit in its own process
   (``linkage.run_linkage_unit``). Peak memory is the largest RSS of this process and of the unit.
3. Against the simulator's truth: per LA, the share of the follow-up list truly on no Welsh
   register before and after, children wrongly removed (on no register, or on their own LA's but
   missed by its matcher) per 10,000 on the lists, and a threshold sweep (calibration).
4. ``--calibrate-unique``: only the unrivalled-pair rule's calibration (``linkage.unique``), under
   ``--repeats`` secrets and three margins.

    .venv/bin/python benchmarks/cross_la.py [--repeats 3] [--children N] [--threshold T] [--seed S]
        [--cache FILE] [--unique-threshold T | --calibrate-unique] [--no-middle]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cme_pipeline import matching
from cme_pipeline.areas import LA_CODES
from cme_pipeline.crypto.clk import (
    TokenHasher,
    create_round_secret,
    destroy_round_secret,
    token_hasher,
)
from cme_pipeline.home import open_keystore
from cme_pipeline.linkage import (
    DEFAULT_MIDDLE_THRESHOLD,
    DEFAULT_POSSIBLE_THRESHOLD,
    DEFAULT_RARE_THRESHOLD,
    DEFAULT_THRESHOLD,
    DEFAULT_UNIQUE_THRESHOLD,
    MIDDLE_ENCODING,
    ClkConfig,
    MiddleEncodings,
    PreviousEncodings,
    encode,
    encode_middle,
    encode_previous,
    household_labels,
    link_encodings,
    rare_names,
    run_linkage_unit,
)
from cme_pipeline.linkage.rare import RARE_NAME_SHARE
from cme_pipeline.schemas import HEALTH_EXTRACT, PREVIOUS_POSTCODE
from cme_pipeline.simulate.la import DEFAULT_SEED
from cme_pipeline.simulate.noise import NoiseConfig
from cme_pipeline.simulate.population import NAME_FREQUENCIES, FamilyConfig
from cme_pipeline.simulate.wales import simulate_las

PERSON = ["forename", "middle_names", "surname", "dob", "sex", "postcode"]


def prepare(children: int | None, seed: int = DEFAULT_SEED, names: str = "2020") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each LA's unmatched children (with truth) and every LA's register records its own matcher
    did not match (with the LA index, and the truth of who each record is and its noise), the
    children named with ``names`` (``FamilyConfig.names``)."""
    queries, targets = [], []
    noise = NoiseConfig(families=FamilyConfig(names=names))
    for i, sim in enumerate(simulate_las(list(LA_CODES), children=children, seed=seed, year_start=2026, noise=noise)):
        extract = sim.extract[list(HEALTH_EXTRACT)].reset_index(drop=True)
        outcomes = matching.match_registers(
            matching.health_to_canonical(extract),
            {s: matching.register_to_canonical(f) for s, f in sim.registers.items()},
        )
        unmatched = (outcomes["outcome"] == "unmatched").to_numpy()
        q = extract.loc[unmatched, [*PERSON, "address_line1", "nhs_number", PREVIOUS_POSTCODE]].reset_index(drop=True)
        q = q.rename(columns={"address_line1": "address"})
        t = sim.truth.loc[unmatched].reset_index(drop=True)
        q["party"], q["la_code"], q["other_la"], q["own_register"] = i, sim.la_code, t["other_la"], t["registers"] != ""
        q["reason"], q["household"] = t["reason"], t["household_id"]
        queries.append(q)
        matched = outcomes[outcomes["outcome"] == "matched"]
        claimed = set(zip(matched["register"], matched["register_record_id"], strict=True))
        claimed |= set(outcomes.attrs["matched_records"])  # a matched child's records on its other registers
        noise = sim.register_truth.set_index(["register", "record_id"])
        for source, frame in sim.registers.items():  # as la/cross_la.py: records the LA's run did not match
            free = [(source, r) not in claimed for r in frame["record_id"]]
            r = frame.loc[free, [*PERSON, "address", "record_id"]].copy()
            r["party"], r["register"] = i, source
            facts = noise.loc[[(source, x) for x in r["record_id"]]]
            r["nhs_number"], r["noise"] = facts["nhs_number"].to_numpy(), facts["noise"].to_numpy()
            targets.append(r)
        print(f"  {sim.la_code}: {len(extract)} children, {int(unmatched.sum())} unmatched", flush=True)
    return pd.concat(queries, ignore_index=True), pd.concat(targets, ignore_index=True)


def by_party(frame: pd.DataFrame, hasher: TokenHasher, config: ClkConfig | None = None) -> np.ndarray:
    """Each LA encodes its own records (as the check does), in the frame's order of parties."""
    return np.concatenate([encode(g[PERSON], hasher, config) for _, g in frame.groupby("party", sort=False)])


def middle_by_party(queries: pd.DataFrame, targets: pd.DataFrame, hasher: TokenHasher) -> MiddleEncodings:
    """The second encodings (``linkage.middle``) each LA makes, as ``la/cross_la.py`` sends them."""
    rows, q_parts, t_parts, t_party = [], [], [], []
    for frame, out in ((queries, q_parts), (targets, t_parts)):
        offset = 0
        for party, g in frame.groupby("party", sort=False):
            r, e = encode_middle(g[PERSON], hasher)
            out.append(e)
            if frame is queries:
                rows.append(r + offset)
            else:
                t_party.append(np.full(len(r), party, dtype=np.int64))
            offset += len(g)
    return MiddleEncodings(np.concatenate(rows), np.concatenate(q_parts), np.concatenate(t_parts), np.concatenate(t_party))


def previous_by_party(queries: pd.DataFrame, hasher: TokenHasher) -> PreviousEncodings | None:
    """The encodings with the previous postcode (``linkage.previous``) each LA makes, as
    ``la/cross_la.py`` sends them; None when no query has one (frames cached before it existed)."""
    if PREVIOUS_POSTCODE not in queries:
        return None
    rows, parts, offset = [], [], 0
    for _, g in queries.groupby("party", sort=False):
        r, e = encode_previous(g[[*PERSON, PREVIOUS_POSTCODE]], hasher)
        rows.append(r + offset)
        parts.append(e)
        offset += len(g)
    return PreviousEncodings(np.concatenate(rows), np.concatenate(parts))


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the linkage unit)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def check_once(queries: pd.DataFrame, targets: pd.DataFrame, threshold: float,
               keys_dir: Path, households: bool = True,
               unique_threshold: float | None = DEFAULT_UNIQUE_THRESHOLD,
               middle_threshold: float | None = DEFAULT_MIDDLE_THRESHOLD,
               rare_threshold: float | None = DEFAULT_RARE_THRESHOLD,
               rare_share: float = RARE_NAME_SHARE, previous: bool = True) -> tuple[float, float, np.ndarray]:
    """One timed check: encode everything under a fresh secret, link at the unit; (wall s, CPU s, found).

    Rare names (``linkage.rare``) are judged, for each LA, on its unmatched children and unmatched
    register records (what the prepared frames hold): a smaller sample than the LA's registers
    that ``la/cross_la.py`` uses, so names look commoner here and fewer count as rare."""
    keys = open_keystore(f"file:{keys_dir}")
    start, cpu = time.perf_counter(), _cpu()
    create_round_secret(keys, "bench")
    hasher = token_hasher(keys, "bench")
    q_clk, t_clk = by_party(queries, hasher), by_party(targets, hasher)
    middle = None if middle_threshold is None else middle_by_party(
        queries, targets, token_hasher(keys, "bench", MIDDLE_ENCODING))
    second_look = previous_by_party(queries, hasher) if previous else None
    moves = {} if not households or "nhs_number" not in queries else {  # one round: no moves, the cost only
        "query_tags": hasher.tags([str(v) for v in queries["nhs_number"]]),
        "query_day": np.full(len(queries), 20261001, dtype=np.int64)}
    destroy_round_secret(keys, "bench")
    groups = {} if not households else {
        "query_group": np.concatenate([household_labels(g["address"], g["postcode"])
                                       for _, g in queries.groupby("party", sort=False)]),
        "target_group": np.concatenate([household_labels(g["address"], g["postcode"])
                                        for _, g in targets.groupby("party", sort=False)])}
    # as la/cross_la.py: the unit answers every pair from the note band up
    lowest = min(DEFAULT_POSSIBLE_THRESHOLD, threshold, threshold if unique_threshold is None else unique_threshold)
    rare = None if rare_threshold is None else rare_by_party(queries, targets, rare_share)  # timed: the check does it
    found = run_linkage_unit(q_clk, queries["party"].to_numpy(), t_clk, targets["party"].to_numpy(), lowest,
                             **groups, **moves, middle=middle,
                             middle_threshold=middle_threshold or DEFAULT_MIDDLE_THRESHOLD,
                             unique=unique_threshold is not None, previous=second_look)
    wall, cpu = time.perf_counter() - start, _cpu() - cpu
    hit = np.zeros(len(queries), dtype=bool)
    sure = found.confirmed(threshold, unique_threshold, middle_threshold)
    if rare is not None and rare_threshold is not None:
        sure = sure | (rare[found.query] & (found.dice >= rare_threshold))
    hit[found.query[sure]] = True
    return wall, cpu, hit


def rare_by_party(queries: pd.DataFrame, targets: pd.DataFrame, limit: float = RARE_NAME_SHARE) -> np.ndarray:
    """``linkage.rare`` for every query, judged on its own LA's queries and register records."""
    rare = np.zeros(len(queries), dtype=bool)
    for party, mine in queries.groupby("party", sort=False):
        names = pd.concat([mine[["forename", "surname"]], targets.loc[targets["party"] == party, ["forename", "surname"]]])
        rare[mine.index.to_numpy()] = rare_names(mine, names, limit)
    return rare


def calibration(queries: pd.DataFrame, targets: pd.DataFrame) -> None:
    """Best Dice of each query (any threshold), and recall and false removals at several thresholds."""
    keys_dir = Path(tempfile.mkdtemp())
    keys = open_keystore(f"file:{keys_dir}")
    create_round_secret(keys, "calibrate")
    hasher = token_hasher(keys, "calibrate")
    q_clk, t_clk = by_party(queries, hasher), by_party(targets, hasher)
    destroy_round_secret(keys, "calibrate")
    found = link_encodings(q_clk, queries["party"].to_numpy(), t_clk, targets["party"].to_numpy(), threshold=0.0)
    best = np.zeros(len(queries))
    best[found.query] = found.dice
    cross = (queries["other_la"] != "").to_numpy()
    none = ~cross & ~queries["own_register"].to_numpy()
    band = (best >= DEFAULT_POSSIBLE_THRESHOLD) & (best < DEFAULT_THRESHOLD)
    print(f"possible band [{DEFAULT_POSSIBLE_THRESHOLD}, {DEFAULT_THRESHOLD}): {int(band[cross].sum())} children on another "
          f"LA's register and {int(band[none].sum())} on no register noted (kept); found or noted: "
          f"{np.mean(best[cross] >= DEFAULT_POSSIBLE_THRESHOLD):.4f} of those on another LA's register")
    print(f"calibration: best Dice of children on no register: max {best[none].max():.3f}, "
          f"top 5 {np.round(np.sort(best[none])[-5:], 3).tolist()}")
    for low in (0.68, 0.70, 0.72, 0.74, 0.76):
        print(f"  possible from {low:.2f}: found or noted {np.mean(best[cross] >= low):.4f} of children on another "
              f"LA's register; {int(np.sum(best[none] >= low))} on no register noted (kept)")
    for th in (0.76, 0.78, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90):
        print(f"  threshold {th:.2f}: found {np.mean(best[cross] >= th):.4f} of children on another LA's register; "
              f"{int(np.sum(best[none] >= th))} of {int(none.sum())} on no register would be removed")


def calibrate_unique(queries: pd.DataFrame, targets: pd.DataFrame, secrets: int = 3,
                     margins: tuple[float, ...] = (0.05, 0.08, 0.12)) -> None:
    """The unrivalled-pair threshold (linkage.unique): under each of ``secrets`` fresh secrets, the
    best Dice of an unrivalled pair of a child on no register, and the share of the lists truly on
    no register and the children on no register removed at several thresholds and margins (households on)."""
    none = ((queries["other_la"] == "") & ~queries["own_register"]).to_numpy()
    cross = (queries["other_la"] != "").to_numpy()
    for k in range(secrets):
        keys_dir = Path(tempfile.mkdtemp())
        keys = open_keystore(f"file:{keys_dir}")
        create_round_secret(keys, f"unique{k}")
        hasher = token_hasher(keys, f"unique{k}")
        q_clk, t_clk = by_party(queries, hasher), by_party(targets, hasher)
        destroy_round_secret(keys, f"unique{k}")
        groups = [np.concatenate([household_labels(g["address"], g["postcode"]) for _, g in f.groupby("party", sort=False)])
                  for f in (queries, targets)]
        for margin in margins:
            found = link_encodings(q_clk, queries["party"].to_numpy(), t_clk, targets["party"].to_numpy(),
                                   threshold=0.5, query_group=groups[0], target_group=groups[1],
                                   unique_margin=margin)
            sure = np.zeros(len(queries), dtype=bool)
            sure[found.query[found.confirmed(DEFAULT_THRESHOLD)]] = True
            alone = np.zeros(len(queries))
            pick = found.unique & ~found.confirmed(DEFAULT_THRESHOLD)
            alone[found.query[pick]] = found.dice[pick]
            top = np.sort(alone[none])[-5:]
            by_dice = np.zeros(len(queries), dtype=bool)
            by_dice[found.query[found.dice >= DEFAULT_THRESHOLD]] = True
            print(f"secret {k}, margin {margin:.2f}: unrivalled pairs of children on no register, best Dice: "
                  f"{np.round(top, 3).tolist()}; children on no register removed by Dice >= {DEFAULT_THRESHOLD}: "
                  f"{int((by_dice & none).sum())}, by households: {int((sure & ~by_dice & none).sum())}")
            for th in (0.76, 0.78, 0.80, 0.82, 0.84, 0.86, 0.87, 0.88):
                hit = sure | (alone >= th)
                print(f"  unique from {th:.2f}: share truly on no register after {none[~hit].mean():.4f}; found "
                      f"{hit[cross].mean():.4f} of those on another LA's register; {int((hit & none).sum())} on no "
                      f"register removed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--children", type=int)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--no-calibration", action="store_true")
    parser.add_argument("--no-households", action="store_true", help="the check as before households (issue 15, first cut)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the simulation's seed")
    parser.add_argument("--names", choices=NAME_FREQUENCIES, default="2020",
                        help="the simulated names' frequencies (1830s: the stress setting)")
    parser.add_argument("--cache", type=Path, help="keep the prepared (synthetic) frames here and reuse them")
    parser.add_argument("--unique-threshold", type=float, default=DEFAULT_UNIQUE_THRESHOLD,
                        help="an unrivalled pair counts as found from here (linkage.unique; default: never)")
    parser.add_argument("--no-middle", action="store_true", help="the check without the second encoding (linkage.middle)")
    parser.add_argument("--no-rare", action="store_true", help="the check without the rare-name rule (linkage.rare)")
    parser.add_argument("--no-previous", action="store_true",
                        help="the check without the look at the previous postcode (linkage.previous)")
    parser.add_argument("--previous-share", type=float, default=1.0,
                        help="the share of the children with a previous postcode whose partner sends it "
                             "(the rest are sent none: a partner with patchy address history)")
    parser.add_argument("--rare-threshold", type=float, default=DEFAULT_RARE_THRESHOLD)
    parser.add_argument("--rare-share", type=float, default=RARE_NAME_SHARE, help="linkage.rare's RARE_NAME_SHARE")
    parser.add_argument("--calibrate-unique", action="store_true",
                        help="only the unrivalled-pair calibration, under --repeats secrets")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}")
    start = time.perf_counter()
    if args.cache is not None and args.cache.exists():
        queries, targets = pd.read_pickle(args.cache)
    else:
        queries, targets = prepare(args.children, args.seed, args.names)
        if args.cache is not None:
            pd.to_pickle((queries, targets), args.cache)
    print(f"prepared in {time.perf_counter() - start:.0f}s: {len(queries)} unmatched children, "
          f"{len(targets)} register records")
    if PREVIOUS_POSTCODE in queries and args.previous_share < 1.0:
        sent = np.random.default_rng(0).random(len(queries)) < args.previous_share
        queries[PREVIOUS_POSTCODE] = queries[PREVIOUS_POSTCODE].where(sent, "")
    if PREVIOUS_POSTCODE in queries:
        print(f"children on the lists with a previous postcode: {int((queries[PREVIOUS_POSTCODE] != '').sum())}")
    if args.calibrate_unique:
        calibrate_unique(queries, targets, args.repeats)
        return
    walls, cpus, hit = [], [], np.zeros(len(queries), dtype=bool)
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as keys_dir:
            wall, cpu, hit = check_once(queries, targets, args.threshold, Path(keys_dir), not args.no_households,
                                        args.unique_threshold, None if args.no_middle else DEFAULT_MIDDLE_THRESHOLD,
                                        None if args.no_rare else args.rare_threshold, args.rare_share,
                                        not args.no_previous)
        walls.append(wall)
        cpus.append(cpu)
        none = (queries["other_la"] == "").to_numpy() & ~queries["own_register"].to_numpy()
        lowest = pd.Series(none[~hit]).groupby(queries["la_code"].to_numpy()[~hit]).mean()
        print(f"  check: {wall:.1f}s wall, {cpu:.1f}s CPU, load {os.getloadavg()[0]:.1f}; under this secret "
              f"{int((hit & none).sum())} children on no register removed, {int(hit.sum())} removed; lowest LA "
              f"{lowest.idxmin()} at {lowest.min():.4f}, {int((lowest >= 0.95).sum())} of {len(lowest)} LAs at 95% "
              f"or more", flush=True)
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_unit = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"check median {statistics.median(walls):.1f}s wall, {statistics.median(cpus):.1f}s CPU of {args.repeats}; "
          f"peak RSS: this process {peak_self:.0f} MiB (with the prepared frames), children {peak_unit:.0f} MiB "
          f"(Linux counts a child's RSS before exec, i.e. the parent's)")

    cross = (queries["other_la"] != "").to_numpy()
    own = queries["own_register"].to_numpy()
    none = ~cross & ~own
    frame = pd.DataFrame({"la": queries["la_code"], "none": none, "hit": hit, "cross": cross, "own": own})
    print(f"{'LA':<10} {'list before':>11} {'on no reg.':>10} {'share':>7} {'removed':>8} {'list after':>10} "
          f"{'share':>7} {'wrong':>6}")
    for la, g in frame.groupby("la", sort=True):
        after = g[~g["hit"]]
        wrong = int((g["hit"] & ~g["cross"]).sum())
        print(f"{la:<10} {len(g):>11} {int(g['none'].sum()):>10} {g['none'].mean():>7.3f} {int(g['hit'].sum()):>8} "
              f"{len(after):>10} {after['none'].mean():>7.3f} {wrong:>6}")
    after = frame[~frame["hit"]]
    wrong_none = int((frame["hit"] & frame["none"]).sum())
    wrong_own = int((frame["hit"] & frame["own"]).sum())
    print(f"Wales: list {len(frame)} -> {len(after)}; share on no Welsh register {frame['none'].mean():.4f} -> "
          f"{after['none'].mean():.4f}; lowest LA share after {after.groupby('la')['none'].mean().min():.4f}; "
          f"found {frame.loc[frame['cross'], 'hit'].mean():.4f} of those on another LA's register; "
          f"wrongly removed: {wrong_none} on no register ({wrong_none / len(frame) * 1e4:.2f} per 10,000), "
          f"{wrong_own} on their own LA's register but missed by its matcher")
    if not args.no_calibration:
        calibration(queries, targets)


if __name__ == "__main__":
    main()
