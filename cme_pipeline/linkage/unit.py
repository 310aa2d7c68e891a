"""The linkage unit: compares encodings by Dice similarity, knowing no secret and no identity.

It receives, for one check, every LA's register encodings and every LA's query encodings (its
retained children), each with only the index of the LA it came from, and answers, for each
query, the LA whose register holds a record at Dice similarity at or above the threshold (the
best one if several), never which record. Given the second encodings of the records that have
a middle name (``linkage.middle``), it links those too, on their own, and answers each query's
best such Dice and its LA. Given encodings of children with their previous postcode
(``linkage.previous``), it compares those with the register encodings too, and each such child's
Dice is the better of its two looks. It is a separate process (``run_linkage_unit`` starts
``python -m cme_pipeline.linkage.unit``, talking over a pipe: nothing is written to disk), so it
shares no memory, key store session or database connection with the LAs.

Candidate pairs come from Hamming locality-sensitive hashing on the encodings' bits (Karapiperis
and Verykios 2015): ``tables`` random samples of ``sample`` bit positions each, drawn by the unit
itself (they need no secret); a pair agreeing on every sampled bit of one table is compared.
"""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from cme_pipeline.linkage.households import NO_HOUSEHOLD, households_found
from cme_pipeline.linkage.middle import DEFAULT_MIDDLE_THRESHOLD, MiddleEncodings
from cme_pipeline.linkage.moves import moved_to
from cme_pipeline.linkage.previous import PreviousEncodings
from cme_pipeline.linkage.unique import unrivalled

# Calibrated on simulated truth (benchmarks/cross_la.py, benchmarks/README.md): a namesake born the
# same day with another postcode, on no register, scored up to 0.835-0.843 under most secrets and
# once 0.861 (seed 20261101: BLIP's noise), so removal needs 0.88; name and date of birth agreeing
# without the postcode (a child who moved, or a namesake) mostly scores between the two.
DEFAULT_THRESHOLD = 0.88
DEFAULT_POSSIBLE_THRESHOLD = 0.76
# Pairs from here count towards a household (linkage.households): on the held-out seed no child on
# no register was confirmed by a household from 0.55 up; 0.60 keeps a margin, and a family's
# pairs with a typo or a missing middle name still count.
DEFAULT_HOUSEHOLD_THRESHOLD = 0.60
# A child whose best pair has no rival (linkage.unique) counts as found from here; None: never
# (the default). Measured with benchmarks/cross_la.py --calibrate-unique, five secrets per seed: the
# best unrivalled pair of a child on no register scored 0.826-0.838 on the held-out seed 20261001
# but 0.847-0.869 on seed 20261101 (one namesake born the same day whose register record has no
# child on any list), whatever the margin (0.05, 0.08, 0.12). A threshold with the margin 0.88 keeps
# above such namesakes would be 0.88 itself, where the rule adds nothing; at 0.87 it would gain half
# a point with no margin at all. So it is an option, off until data with real name frequencies
# (or more evidence at the unit) calibrates it.
DEFAULT_UNIQUE_THRESHOLD: float | None = None
# How far above every other pair of its query and of its register record an unrivalled pair must be.
UNIQUE_MARGIN = 0.05
TABLES = 48
SAMPLE = 22


@dataclass(frozen=True)
class Found:
    """Queries found on another LA's register: index into the queries, that LA's index, Dice, and
    whether two households confirm it (``linkage.households``; then Dice may be under the threshold)."""

    query: np.ndarray
    party: np.ndarray
    dice: np.ndarray
    household: np.ndarray | None = None
    moved: np.ndarray | None = None  # queries now on another LA's later extract (linkage.moves)
    moved_party: np.ndarray | None = None  # and that LA's index
    unique: np.ndarray | None = None  # whose best pair has no rival (linkage.unique)
    middle: np.ndarray | None = None  # Dice of the best pair of second encodings (linkage.middle); 0: none
    middle_party: np.ndarray | None = None  # and that pair's LA index (-1: none)

    def _main(self, threshold: float, unique_threshold: float | None) -> np.ndarray:
        sure = self.dice >= threshold
        if self.household is not None:
            sure = sure | self.household
        if unique_threshold is not None and self.unique is not None:
            sure = sure | (self.unique & (self.dice >= unique_threshold))
        return sure

    def _by_middle(self, middle_threshold: float | None) -> np.ndarray:
        if middle_threshold is None or self.middle is None:
            return np.zeros(len(self.query), dtype=bool)
        return self.middle >= middle_threshold

    def confirmed(self, threshold: float, unique_threshold: float | None = None,
                  middle_threshold: float | None = None) -> np.ndarray:
        """Which of the found queries count as found for sure: Dice at the threshold, a household,
        (given ``unique_threshold``) an unrivalled best pair at that Dice or more, or (given
        ``middle_threshold``) second encodings agreeing at that Dice or more."""
        return self._main(threshold, unique_threshold) | self._by_middle(middle_threshold)

    def found_party(self, threshold: float, unique_threshold: float | None = None,
                    middle_threshold: float | None = None) -> np.ndarray:
        """The LA index each found query is on (or possibly on): the main encoding's, unless only
        the second encodings confirm it, on the register of their pair's LA."""
        if self.middle_party is None:
            return self.party
        only_middle = ~self._main(threshold, unique_threshold) & self._by_middle(middle_threshold)
        return np.where(only_middle, self.middle_party, self.party)


def _popcount_rows(a: np.ndarray) -> np.ndarray:
    return np.bitwise_count(a.view(np.uint64)).sum(axis=1, dtype=np.int64)


def _keys(bits: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """One uint64 bucket key per row: the row's bits at ``positions``."""
    byte, shift = positions // 8, 7 - positions % 8
    sampled = (bits[:, byte] >> shift.astype(np.uint8)) & 1
    return (sampled.astype(np.uint64) << np.arange(len(positions), dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def link_encodings(
    queries: np.ndarray, query_party: np.ndarray, targets: np.ndarray, target_party: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD, tables: int = TABLES, sample: int = SAMPLE, seed: int | None = None,
    query_group: np.ndarray | None = None, target_group: np.ndarray | None = None,
    household_threshold: float = DEFAULT_HOUSEHOLD_THRESHOLD, household_strong: float = DEFAULT_POSSIBLE_THRESHOLD,
    unique_margin: float | None = UNIQUE_MARGIN,
) -> Found:
    """For each query, the best target of another party at Dice >= ``threshold``, the queries two
    households confirm (``linkage.households``) from ``household_threshold``, and whether each
    found query's best pair is unrivalled (``linkage.unique``, ``Found.unique``).

    Args:
        queries: uint8 encodings (rows) of the children to look for.
        query_party: the index of the LA each query came from.
        targets: uint8 encodings of register records, same width.
        target_party: the index of the LA each target came from.
        threshold: the lowest Dice similarity that counts as the same child.
        tables: LSH tables.
        sample: bits sampled per table (at most 64).
        seed: for the bit samples (default: fresh).
        query_group: each query's household label within its party (``NO_HOUSEHOLD`` for none);
            None: no household evidence.
        target_group: each target's household label within its party.
        household_threshold: the lowest Dice of a pair that a household can confirm.
        household_strong: the Dice one pair of the two households must reach (name and date of
            birth agree).
        unique_margin: how far above its rivals an unrivalled pair must be (rivals are the pairs
            from ``household_threshold``); None: not looked for (``Found.unique`` is None).
    """
    if queries.shape[1] != targets.shape[1] or queries.shape[1] % 8:
        raise ValueError("queries and targets must be encodings of one width (a multiple of 64 bits)")
    rng = np.random.default_rng(seed)
    width = queries.shape[1] * 8
    q_pop, t_pop = _popcount_rows(queries), _popcount_rows(targets)
    best = np.zeros(len(queries), dtype=np.float64)
    best_party = np.full(len(queries), -1, dtype=np.int64)
    best_target = np.full(len(queries), -1, dtype=np.int64)
    near_q: list[np.ndarray] = []
    near_t: list[np.ndarray] = []
    near_d: list[np.ndarray] = []
    for _ in range(tables if len(queries) and len(targets) else 0):
        positions = rng.choice(width, sample, replace=False)
        tk, qk = _keys(targets, positions), _keys(queries, positions)
        order = np.argsort(tk, kind="stable")
        sorted_keys = tk[order]
        lo, hi = np.searchsorted(sorted_keys, qk, "left"), np.searchsorted(sorted_keys, qk, "right")
        sizes = hi - lo
        qi = np.repeat(np.arange(len(queries)), sizes)
        if not qi.size:
            continue
        ti = order[np.repeat(lo, sizes) + (np.arange(qi.size) - np.repeat(np.cumsum(sizes) - sizes, sizes))]
        keep = target_party[ti] != query_party[qi]
        qi, ti = qi[keep], ti[keep]
        for start in range(0, qi.size, 200_000):
            a, b = qi[start : start + 200_000], ti[start : start + 200_000]
            common = _popcount_rows(queries[a] & targets[b])
            dice = 2.0 * common / np.maximum(q_pop[a] + t_pop[b], 1)
            near = dice >= household_threshold  # for households and for rivals (linkage.unique)
            near_q.append(a[near])
            near_t.append(b[near])
            near_d.append(dice[near])
            better = dice > best[a]
            # several pairs of one query in a chunk: the order of assignment keeps the last, so
            # sort by Dice so the best is written last
            idx = np.argsort(dice[better], kind="stable")
            best[a[better][idx]] = dice[better][idx]
            best_party[a[better][idx]] = target_party[b[better][idx]]
            best_target[a[better][idx]] = b[better][idx]
    pq = np.concatenate(near_q) if near_q else np.zeros(0, dtype=np.int64)
    pt = np.concatenate(near_t) if near_t else np.zeros(0, dtype=np.int64)
    pd_ = np.concatenate(near_d) if near_d else np.zeros(0)
    alone = None if unique_margin is None else unrivalled(pq, pt, pd_, best, best_target, unique_margin,
                                                          floor=threshold)  # only hits are answered
    if query_group is None or target_group is None:
        hit = np.flatnonzero(best >= threshold)
        return Found(hit, best_party[hit], best[hit], unique=None if alone is None else alone[hit])
    confirmed = households_found(pq, pt, pd_, _unique_groups(query_party, query_group),
                                 _unique_groups(target_party, target_group), household_strong)
    by_household = np.zeros(len(queries), dtype=bool)
    by_household[pq[confirmed]] = True
    # a confirmed query is on the register of its household pair's LA (whatever its best Dice's LA)
    party = best_party.copy()
    party[pq[confirmed]] = target_party[pt[confirmed]]
    hit = np.flatnonzero((best >= threshold) | by_household)
    return Found(hit, party[hit], best[hit], by_household[hit], unique=None if alone is None else alone[hit])


def _aligned(found: Found, other: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The queries of ``found`` and ``other`` together (sorted), where each side's sit among
    them, ``found``'s Dice there (0 elsewhere) and an LA index of -1 for each."""
    query = np.union1d(found.query, other)
    at, other_at = np.searchsorted(query, found.query), np.searchsorted(query, other)
    dice = np.zeros(len(query))
    dice[at] = found.dice
    return query, at, other_at, dice, np.full(len(query), -1, dtype=np.int64)


def with_middle(found: Found, query_rows: np.ndarray, middle: Found) -> Found:
    """``found`` with the queries the second encodings found (``middle``, whose query indices
    count among ``query_rows``) added, and each found query's best second-encoding pair."""
    query, at, m_at, dice, party = _aligned(found, query_rows[middle.query])
    party[m_at] = middle.party
    party[at] = found.party  # the main encoding's LA, where it found the query
    m_dice = np.zeros(len(query))
    m_dice[m_at] = middle.dice
    m_party = np.full(len(query), -1, dtype=np.int64)
    m_party[m_at] = middle.party

    def spread(values: np.ndarray | None) -> np.ndarray | None:
        if values is None:
            return None
        out = np.zeros(len(query), dtype=bool)
        out[at] = values
        return out

    return Found(query, party, dice, spread(found.household), found.moved, found.moved_party,
                 spread(found.unique), m_dice, m_party)


def link_with_previous(
    queries: np.ndarray, query_party: np.ndarray, targets: np.ndarray, target_party: np.ndarray,
    threshold: float, previous: PreviousEncodings | None, query_group: np.ndarray | None = None,
    target_group: np.ndarray | None = None, household_threshold: float = DEFAULT_HOUSEHOLD_THRESHOLD,
    unique_margin: float | None = UNIQUE_MARGIN,
) -> Found:
    """``link_encodings`` of the queries and, in the same pass, of their second looks
    (``previous``), merged by ``with_previous``.

    One pass, not two: the cost of linking is mostly bucketing every register encoding, once per
    LSH table. A second look belongs to no household, and it is a rival of the pairs of its
    register record (``linkage.unique``), as another child agreeing with that record would be.
    """
    if previous is None or not len(previous.query_rows):
        return link_encodings(queries, query_party, targets, target_party, threshold, query_group=query_group,
                              target_group=target_group, household_threshold=household_threshold,
                              unique_margin=unique_margin)
    n, rows = len(queries), previous.query_rows
    group = None if query_group is None else np.concatenate(
        [query_group, np.full(len(rows), NO_HOUSEHOLD, dtype=np.asarray(query_group).dtype)])
    both = link_encodings(np.concatenate([queries, previous.queries]), np.concatenate([query_party, query_party[rows]]),
                          targets, target_party, threshold, query_group=group, target_group=target_group,
                          household_threshold=household_threshold, unique_margin=unique_margin)
    first, second = both.query < n, both.query >= n

    def part(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else values[first]

    main = Found(both.query[first], both.party[first], both.dice[first], part(both.household),
                 unique=part(both.unique))
    return with_previous(main, rows, Found(both.query[second] - n, both.party[second], both.dice[second]))


def with_previous(found: Found, query_rows: np.ndarray, previous: Found) -> Found:
    """``found`` with each query's second look (``previous``: its encoding with its previous
    postcode, whose query indices count among ``query_rows``): the better Dice of the two, and its
    LA. A query a household confirmed keeps that household's LA."""
    query, at, p_at, dice, party = _aligned(found, query_rows[previous.query])
    party[at] = found.party
    household = np.zeros(len(query), dtype=bool)
    if found.household is not None:
        household[at] = found.household
    better = (previous.dice > dice[p_at]) & ~household[p_at]
    dice[p_at[better]] = previous.dice[better]
    party[p_at[better]] = previous.party[better]
    unique = None
    if found.unique is not None:  # a pair of the second look is never judged unrivalled
        unique = np.zeros(len(query), dtype=bool)
        unique[at] = found.unique
        unique[p_at[better]] = False
    return Found(query, party, dice, household if found.household is not None else None, found.moved,
                 found.moved_party, unique)


def _unique_groups(party: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Household labels made unique across parties (each LA labels its own records)."""
    return np.where(group == NO_HOUSEHOLD, NO_HOUSEHOLD, party.astype(np.int64) * (1 << 32) + group)


def run_linkage_unit(
    queries: np.ndarray, query_party: np.ndarray, targets: np.ndarray, target_party: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD, query_group: np.ndarray | None = None,
    target_group: np.ndarray | None = None, household_threshold: float = DEFAULT_HOUSEHOLD_THRESHOLD,
    query_tags: np.ndarray | None = None, query_day: np.ndarray | None = None,
    middle: MiddleEncodings | None = None, middle_threshold: float = DEFAULT_MIDDLE_THRESHOLD,
    unique: bool = True, previous: PreviousEncodings | None = None,
) -> Found:
    """``link_encodings`` in a separate process (the linkage unit), over a pipe; with tags, also
    the queries now on another LA's later extract (``linkage.moves``); with second encodings,
    those linked too (``with_middle``).

    Args:
        queries: uint8 encodings of the children to look for.
        query_party: the index of the LA each query came from.
        targets: uint8 encodings of register records.
        target_party: the index of the LA each target came from.
        threshold: the lowest Dice similarity that counts as the same child.
        query_group: each query's household label (``linkage.households``), or None.
        target_group: each target's household label, or None.
        household_threshold: the lowest Dice of a pair that a household can confirm.
        query_tags: each query's keyed NHS-number tag, or None.
        query_day: the extract day of each query's delivery.
        middle: the second encodings of the queries and register records with a middle name.
        middle_threshold: the lowest Dice of second encodings the unit answers.
        unique: whether to look for unrivalled pairs (``Found.unique``).
        previous: the encodings of the queries with a previous postcode (``with_previous``).
    """
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {
        "queries": queries, "query_party": query_party, "targets": targets, "target_party": target_party,
        "threshold": np.array(threshold), "household_threshold": np.array(household_threshold),
        "unique": np.array(unique)}
    if query_group is not None and target_group is not None:
        arrays |= {"query_group": query_group, "target_group": target_group}
    if query_tags is not None and query_day is not None:
        arrays |= {"query_tags": query_tags, "query_day": query_day}
    if middle is not None:
        arrays |= {"middle_rows": middle.query_rows, "middle_queries": middle.queries,
                   "middle_targets": middle.targets, "middle_target_party": middle.target_party,
                   "middle_threshold": np.array(middle_threshold)}
    if previous is not None:
        arrays |= {"previous_rows": previous.query_rows, "previous_queries": previous.queries}
    np.savez(buffer, **arrays)
    done = subprocess.run([sys.executable, "-m", "cme_pipeline.linkage.unit"], input=buffer.getvalue(),
                          capture_output=True, check=False)
    if done.returncode != 0:
        # The unit's stderr holds no personal data (it never sees any), only its own error line.
        raise RuntimeError(f"the linkage unit failed (exit {done.returncode}): "
                           f"{done.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    answer = np.load(io.BytesIO(done.stdout))
    return Found(answer["query"], answer["party"], answer["dice"],
                 answer["household"] if "household" in answer else None,
                 answer["moved"] if "moved" in answer else None,
                 answer["moved_party"] if "moved_party" in answer else None,
                 answer["unique"] if "unique" in answer else None,
                 answer["middle"] if "middle" in answer else None,
                 answer["middle_party"] if "middle_party" in answer else None)


def main() -> int:
    """The unit's process: encodings on stdin, findings on stdout (both .npz)."""
    data = np.load(io.BytesIO(sys.stdin.buffer.read()))
    groups = "query_group" in data and "target_group" in data
    previous = PreviousEncodings(data["previous_rows"], data["previous_queries"]) if "previous_rows" in data else None
    found = link_with_previous(data["queries"], data["query_party"], data["targets"], data["target_party"],
                               float(data["threshold"]), previous,
                               query_group=data["query_group"] if groups else None,
                               target_group=data["target_group"] if groups else None,
                               household_threshold=float(data["household_threshold"]),
                               unique_margin=UNIQUE_MARGIN if bool(data["unique"]) else None)
    if "middle_rows" in data:
        rows = data["middle_rows"]
        found = with_middle(found, rows, link_encodings(
            data["middle_queries"], data["query_party"][rows], data["middle_targets"], data["middle_target_party"],
            float(data["middle_threshold"]), unique_margin=None))
    out = io.BytesIO()
    arrays: dict[str, Any] = {"query": found.query, "party": found.party, "dice": found.dice}
    if found.household is not None:
        arrays["household"] = found.household
    if found.unique is not None:
        arrays["unique"] = found.unique
    if found.middle is not None and found.middle_party is not None:
        arrays["middle"], arrays["middle_party"] = found.middle, found.middle_party
    if "query_tags" in data and "query_day" in data:
        arrays["moved"], arrays["moved_party"] = moved_to(data["query_tags"], data["query_party"], data["query_day"])
    np.savez(out, **arrays)
    sys.stdout.buffer.write(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
