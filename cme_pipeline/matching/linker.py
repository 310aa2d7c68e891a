"""``link``, ``match_registers`` and ``explain``: the matching engine's public operations."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cme_pipeline.matching import decide
from cme_pipeline.matching.assign import one_to_one
from cme_pipeline.matching.blocking import block
from cme_pipeline.matching.compare import COMPARISONS, LEVELS, compare
from cme_pipeline.matching.config import LinkConfig
from cme_pipeline.matching.learn import audit_sample
from cme_pipeline.matching.model import LinkModel, contributions, fit, probability
from cme_pipeline.matching.prepare import Prepared, prepare
from cme_pipeline.matching.twins import guarded, in_twin_group
from cme_pipeline.progress import say, track
from cme_pipeline.schemas import LINK_PAIRS, MATCH_OUTCOME

# The band of a `possible` pair that officers' decisions cleared (``learn``): not a candidate any more.
CLEARED = "cleared"
# Pairs compared per chunk: bounds memory (a few hundred MB per chunk at most) and gives the
# progress bar something to count.
CHUNK = 1_000_000


def _chunks(n: int) -> list[slice]:
    return [slice(start, min(start + CHUNK, n)) for start in range(0, n, CHUNK)]


def _scored_pairs(
    L: Prepared, R: Prepared, config: LinkConfig, progress: bool, model: LinkModel
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs at or above the lower threshold: left row, right row, match weight
    (bits), whether the twin guard holds the pair out of the match band, and the pair's levels."""
    candidates = block(L, R)
    if progress:
        say(f"blocking: {len(candidates)} candidate pairs from {len(L)} x {len(R)} records")
    left_twins, right_twins = in_twin_group(L), in_twin_group(R)
    kept_l, kept_r, kept_p, kept_g, kept_levels = [], [], [], [], []
    slices = _chunks(len(candidates))
    for part in track(slices, len(slices), "scoring") if progress and slices else slices:
        li, ri = candidates.left[part], candidates.right[part]
        gamma = compare(L, R, li, ri, config.workers)
        weight = contributions(model, L, R, li, ri, gamma, config.term_frequency).sum(axis=1)
        weight += model.prior_weight
        keep = probability(weight) >= config.possible_threshold
        kept_l.append(li[keep])
        kept_r.append(ri[keep])
        kept_p.append(weight[keep])
        kept_g.append(guarded(left_twins, right_twins, li[keep], ri[keep], gamma[keep, 0]))
        kept_levels.append(gamma[keep])
    if not kept_l:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0), np.empty(0, dtype=bool), np.empty((0, len(COMPARISONS)), dtype=np.int8)
    return tuple(np.concatenate(k) for k in (kept_l, kept_r, kept_p, kept_g, kept_levels))  # type: ignore[return-value]


def _runner_up(key: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """For each pair, the best weight among the *other* pairs sharing its ``key`` (-inf if none)."""
    frame = pd.DataFrame({"k": key, "w": weight})
    ordered = frame.sort_values("w", ascending=False, kind="stable")
    rank = ordered.groupby("k").cumcount()
    first = ordered["w"].where(rank == 0).groupby(ordered["k"]).max()
    second = ordered["w"].where(rank == 1).groupby(ordered["k"]).max()
    best = frame["k"].map(first).to_numpy()
    runner = frame["k"].map(second).fillna(-np.inf).to_numpy()
    is_first = np.zeros(len(key), dtype=bool)
    is_first[ordered.index[(rank == 0).to_numpy()]] = True
    return np.where(is_first, runner, best)


def _bands(li: np.ndarray, ri: np.ndarray, w: np.ndarray, guard: np.ndarray, config: LinkConfig) -> np.ndarray:
    """``match`` for pairs kept by one-to-one assignment at or above the match threshold with
    no close rival, ``possible`` for the rest (a strong pair that lost to a stronger one, or
    one with a rival within ``ambiguity_bits``, is for a human).

    Guarded pairs (see ``twins``) take no part in the assignment, so a twin's cross pair can
    never take the other twin's record from them; they still count as rivals.
    """
    accepted = np.zeros(len(li), dtype=bool)
    free = ~guard
    accepted[free] = one_to_one(li[free], ri[free], w[free])
    rival = np.maximum(_runner_up(li, w), _runner_up(ri, w))
    clear = rival < w - config.ambiguity_bits
    return np.where(accepted & clear & (probability(w) >= config.match_threshold), "match", "possible")


def link(
    left: pd.DataFrame, right: pd.DataFrame, config: LinkConfig | None = None, progress: bool = False
) -> pd.DataFrame:
    """Link two frames of canonical person columns.

    Args:
        left: ``record_id`` and any canonical person columns (missing ones count as empty).
        right: the same, for the other side (term frequencies and u come from both).
        config: thresholds and estimation settings (default ``LinkConfig()``).
        progress: draw stage counts and a progress bar on stderr (counts only).

    Returns:
        ``LINK_PAIRS`` columns for every pair at or above ``possible_threshold``, best first;
        each record appears in at most one ``match`` row.
    """
    config = config or LinkConfig()
    if config.profile == "general":
        from cme_pipeline.matching import general

        return general.link(left, right, config, progress)
    L, R = prepare(left), prepare(right)
    if progress and (L.unparseable or R.unparseable):
        say(f"unparseable values treated as missing: {L.unparseable} left, {R.unparseable} right")
    return _link_prepared(L, R, config, progress)


def _link_prepared(
    L: Prepared, R: Prepared, config: LinkConfig, progress: bool, by_assignment: bool = False,
    decisions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Scored, banded pairs; ``by_assignment`` decides by the probability given the one-to-one
    assignment (``decide``, the pipeline's children) instead of by pair and ambiguity guard.

    With ``decisions``, a ``possible`` pair whose agreement pattern officers have kept rejecting
    is banded ``CLEARED`` (``learn``), after every pair is banded: it never changes a match.
    """
    if len(L) == 0 or len(R) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LINK_PAIRS})
    model = fit(L, R, config, decisions)
    li, ri, w, guard, levels = _scored_pairs(L, R, config, progress, model)
    if by_assignment:
        bits = decide.assignment_bits(model, len(L), len(R))
        band, p = decide.bands(li, ri, w, guard, bits, config.match_threshold)
    else:
        band, p = _bands(li, ri, w, guard, config), probability(w)
    cleared = (band == "possible") & model.learned.clears(levels)
    if cleared.any():  # the audit sample of cleared pairs stays in review (``learn.audit_sample``)
        at = np.flatnonzero(cleared)
        cleared[at[audit_sample(L.record_id[li[at]], R.record_id[ri[at]])]] = False
    band = np.where(cleared, CLEARED, band)
    out = pd.DataFrame(
        {"left_id": L.record_id[li], "right_id": R.record_id[ri], "probability": p, "band": band}
    )
    out = out.sort_values(["probability", "left_id", "right_id"], ascending=[False, True, True])
    return out.reset_index(drop=True)[list(LINK_PAIRS)]


def match_registers(
    health: pd.DataFrame, registers: dict[str, pd.DataFrame], config: LinkConfig | None = None,
    progress: bool = False, *, pairwise: bool = False, decisions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The outcome for every health record against all registers.

    Each register is linked separately (one-to-one within it: a child may be on several
    registers). Unlike ``link``'s pairwise bands, a pair is in the match band when its
    probability *given the one-to-one assignment* reaches ``match_threshold`` (``decide``: the
    prior that almost every child is on a register, rivals counted as the swaps they imply);
    twins' guarded pairs are never matched. A health record is ``matched`` if its best pair is
    in the match band, ``possible`` if in the possible band, else ``unmatched``.

    Args:
        health: canonical person columns, ``record_id`` a per-delivery row reference.
        registers: register frames in canonical person columns, keyed by source name.
        config: thresholds and estimation settings.
        progress: stage counts on stderr.
        pairwise: decide by ``link``'s pairwise bands and ambiguity guard instead (the earlier
            decision, kept so benchmarks can compare the two).
        decisions: officers' earlier review decisions (``schemas.DECIDED_PAIR``): a `possible`
            pair whose agreement pattern they have kept rejecting stops being a candidate
            (``learn``); it never makes a match.

    Returns:
        ``MATCH_OUTCOME`` columns, one row per health record in input order; ``register`` and
        ``register_record_id`` of the best candidate ("" when there is none), ``probability``
        its probability (0.0 when none). ``attrs["cleared_by_decisions"]``: how many children
        are ``unmatched`` rather than ``possible`` because of the decisions (a count);
        ``attrs["matched_records"]``: ``(register, record id)`` of every register record a matched
        child matched, on each register it is on (ids only).
    """
    config = config or LinkConfig()
    frames = []
    cleared_ids: set[str] = set()
    L = prepare(health)  # once, whatever the number of registers
    for source in sorted(registers):
        frame = registers[source]
        if len(frame) == 0:
            continue
        if progress:
            say(f"matching against {source}: {len(frame)} register records")
        pairs = _link_prepared(L, prepare(frame), config, progress, by_assignment=not pairwise,
                               decisions=decisions)
        pairs["register"] = source
        cleared_ids.update(pairs.loc[pairs["band"] == CLEARED, "left_id"])
        frames.append(pairs[pairs["band"] != CLEARED])
    ids = health["record_id"].astype(str).to_numpy() if "record_id" in health else np.array([])
    result = pd.DataFrame({"health_record_id": ids})
    if frames:
        pairs = pd.concat(frames, ignore_index=True)
        pairs["is_match"] = pairs["band"] == "match"
        pairs = pairs.sort_values(["is_match", "probability", "register"], ascending=[False, False, True])
        best = pairs.drop_duplicates("left_id").set_index("left_id")
        result = result.join(best, on="health_record_id")
    else:
        result = result.assign(band=None, right_id=None, register=None, probability=None)
    outcome = np.where(result["band"] == "match", "matched", np.where(result["band"] == "possible", "possible", "unmatched"))
    out = pd.DataFrame(
        {
            "health_record_id": result["health_record_id"].to_numpy(),
            "outcome": outcome,
            "register": result["register"].fillna("").to_numpy(),
            "register_record_id": result["right_id"].fillna("").to_numpy(),
            "probability": result["probability"].astype(float).fillna(0.0).to_numpy(),
        }
    )[list(MATCH_OUTCOME)]
    out.attrs["cleared_by_decisions"] = int((out["health_record_id"].isin(cleared_ids) & (outcome == "unmatched")).sum())
    # A matched child on two registers (school census and EOTAS, say) matched a record on each:
    # every one of them is a pupil who lives here (la/cross_la.py leaves them out of the check).
    out.attrs["matched_records"] = _matched_records(frames, set(out.loc[out["outcome"] == "matched", "health_record_id"]))
    return out


def _matched_records(frames: list[pd.DataFrame], matched: set[str]) -> list[tuple[str, str]]:
    """``(register, record id)`` of every match-band pair of a matched child, on any register."""
    out: list[tuple[str, str]] = []
    for pairs in frames:
        hit = pairs[(pairs["band"] == "match") & pairs["left_id"].isin(matched)]
        out.extend(zip(hit["register"].astype(str), hit["right_id"].astype(str), strict=True))
    return out


def fit_model(left: pd.DataFrame, right: pd.DataFrame, config: LinkConfig | None = None) -> LinkModel:
    """Fit the model ``link`` would use on these two frames (for repeated ``explain`` calls)."""
    return fit(prepare(left), prepare(right), config or LinkConfig())


def explain(
    left: pd.DataFrame, right: pd.DataFrame, left_id: str, right_id: str,
    config: LinkConfig | None = None, model: LinkModel | None = None,
) -> pd.DataFrame:
    """Per-field match weights for one pair, for the clerical review pack.

    The result names comparisons and agreement levels and gives weights in bits; it holds no
    personal value, and nothing is logged.

    Args:
        left: the left frame (e.g. the health extract in canonical columns).
        right: the right frame (one register).
        left_id: the left record's ``record_id``.
        right_id: the right record's ``record_id``.
        config: estimation settings (used when ``model`` is not given).
        model: a model from ``fit_model`` on the same frames; fitted here when not given.

    Returns:
        One row per comparison plus ``prior`` and ``total``: columns ``comparison``, ``level``,
        ``weight`` (bits), and ``probability`` on the ``total`` row.

    Raises:
        KeyError: an id is not in its frame (the message names the side, not the id).
    """
    config = config or LinkConfig()
    L: Prepared
    R: Prepared
    # Explain the pair with the comparisons and model the chosen profile's link would use.
    if config.profile == "general":
        from cme_pipeline.matching import general

        L, R = general.prepare_general(left), general.prepare_general(right)
        model = model or general.fit(L, R, config)
    else:
        L, R = prepare(left), prepare(right)
        model = model or fit(L, R, config)
    lrow = np.flatnonzero(L.record_id == left_id)
    rrow = np.flatnonzero(R.record_id == right_id)
    if len(lrow) == 0 or len(rrow) == 0:
        raise KeyError("left record not found" if len(lrow) == 0 else "right record not found")
    li, ri = lrow[:1], rrow[:1]
    if config.profile == "general":
        gamma = general.compare(L, R, li, ri, config.workers)  # type: ignore[arg-type]  # L, R from prepare_general
    else:
        gamma = compare(L, R, li, ri, config.workers)
    weights = contributions(model, L, R, li, ri, gamma, config.term_frequency)[0]
    rows = [
        {
            "comparison": c,
            "level": "missing" if gamma[0, k] < 0 else LEVELS[c][gamma[0, k]],
            "weight": float(weights[k]),
        }
        for k, c in enumerate(COMPARISONS)
    ]
    total = float(weights.sum() + model.prior_weight)
    rows.insert(0, {"comparison": "prior", "level": "", "weight": model.prior_weight})
    rows.append({"comparison": "total", "level": "", "weight": total})
    out = pd.DataFrame(rows)
    out["probability"] = np.nan
    out.loc[out.index[-1], "probability"] = float(probability(np.array([total]))[0])
    return out
