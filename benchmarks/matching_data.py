"""Shared data and scoring for the matching benchmarks (simulated LAs with ground truth).

Ground truth: a health row (NHS number) truly matches register record R iff R's
``register_truth.nhs_number`` equals it. The matcher never sees NHS numbers: health rows go in
as ``r000001`` row references.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cme_pipeline.areas import LA_CODES
from cme_pipeline.matching import health_to_canonical, register_to_canonical
from cme_pipeline.nhs_number import generate_test_numbers
from cme_pipeline.simulate import NoiseConfig, simulate_la
from cme_pipeline.simulate.wales import split_children

CARDIFF = "W06000015"


@dataclass
class Dataset:
    """Canonical inputs plus the truth needed to score them."""

    name: str
    health: pd.DataFrame  # canonical, record_id r000001...
    registers: dict[str, pd.DataFrame]  # canonical, keyed by source
    nhs: np.ndarray  # NHS number per health row (truth only)
    register_truth: pd.DataFrame  # register, record_id, nhs_number
    twin: dict[str, str]  # NHS number -> twin group ("" if none)
    off_register: np.ndarray  # per health row: on no register

    def save(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self))

    @staticmethod
    def load(path: Path) -> Dataset:
        data: Dataset = pickle.loads(path.read_bytes())  # noqa: S301 - our own temp file
        return data


def build(
    codes: list[str], noise_scale: float = 1.0, seed: int = 20260901, name: str = "", hard: bool = False,
    children: int | None = None,
) -> Dataset:
    """Simulate the LAs and pool them into one extract and one frame per register.

    ``hard`` adds the harder families and stale registers (``FamilyConfig.hard()``); ``children``
    simulates that many in all instead of the LAs' realistic sizes.

    NHS numbers are handed out in disjoint slices, as ``cme simulate`` does, so that they are
    unique across the pooled LAs and the ground truth is exact.
    """
    counts = split_children(codes, children)
    numbers = generate_test_numbers(sum(counts.values()), np.random.default_rng([seed, 999]))
    starts = np.cumsum([0, *counts.values()])
    noise = NoiseConfig().scaled(noise_scale)
    noise = noise.hard() if hard else noise
    sims = [
        simulate_la(c, counts[c], seed=seed, noise=noise, year_start=2026,
                    nhs_numbers=numbers[starts[i] : starts[i + 1]])
        for i, c in enumerate(codes)
    ]
    extract = pd.concat([s.extract for s in sims], ignore_index=True)
    registers = {
        k: register_to_canonical(pd.concat([s.registers[k] for s in sims], ignore_index=True))
        for k in sims[0].registers
    }
    rt = pd.concat([s.register_truth for s in sims], ignore_index=True)[["register", "record_id", "nhs_number"]]
    truth = pd.concat([s.truth for s in sims], ignore_index=True)
    return Dataset(
        name=name or ",".join(codes),
        health=health_to_canonical(extract),
        registers=registers,
        nhs=extract["nhs_number"].to_numpy(),
        register_truth=rt,
        twin=dict(zip(truth["nhs_number"], truth["twin"], strict=True)),
        off_register=(truth.set_index("nhs_number").loc[extract["nhs_number"], "registers"] == "").to_numpy(),
    )


def cardiff(noise_scale: float = 1.0, hard: bool = False) -> Dataset:
    return build([CARDIFF], noise_scale, name="Cardiff", hard=hard)


def wales(noise_scale: float = 1.0, codes: list[str] | None = None, hard: bool = False) -> Dataset:
    return build(list(codes or LA_CODES), noise_scale, name="Wales" if codes is None else f"{len(codes)} LAs",
                 hard=hard)


def _owner(data: Dataset) -> dict[tuple[str, str], str]:
    rt = data.register_truth
    return dict(zip(zip(rt["register"], rt["record_id"], strict=True), rt["nhs_number"], strict=True))


def pair_metrics(data: Dataset, register: str, matches: pd.DataFrame) -> dict[str, float]:
    """Precision, recall, F1 of a register's match-band pairs (left_id, right_id)."""
    nhs = dict(zip(data.health["record_id"], data.nhs, strict=True))
    owner = _owner(data)
    on_extract = set(data.nhs)
    rt = data.register_truth
    true_pairs = int(((rt["register"] == register) & rt["nhs_number"].isin(on_extract)).sum())
    tp = sum(owner[(register, r)] == nhs[h] for h, r in zip(matches["left_id"], matches["right_id"], strict=True))
    fp = len(matches) - tp
    fn = true_pairs - tp
    precision = tp / max(tp + fp, 1)
    recall = tp / max(true_pairs, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def child_metrics(data: Dataset, outcome: pd.DataFrame) -> dict[str, float]:
    """Per-child errors from ``match_registers`` output (rows in health order)."""
    owner = _owner(data)
    matched = (outcome["outcome"] == "matched").to_numpy()
    right_owner = np.array([owner.get((r, i), "") for r, i in
                            zip(outcome["register"], outcome["register_record_id"], strict=True)], dtype=object)
    correct = matched & (right_owner == data.nhs)
    off = data.off_register
    on = ~off
    twins = sum(
        1 for n, o, m in zip(data.nhs, right_owner, matched, strict=True)
        if m and o != n and data.twin.get(n, "") != "" and data.twin.get(o, "") == data.twin.get(n, "")
    )
    n = len(outcome)
    return {
        "children": n,
        "off_register": int(off.sum()),
        "missing_wrongly_matched": int((matched & off).sum()),
        "registered_wrongly_unmatched": int((on & ~matched).sum()),
        "registered_matched_to_wrong_record": int((on & matched & ~correct).sum()),
        "twins_cross_matched": twins,
        "possible": int((outcome["outcome"] == "possible").sum()),
        "per10k_missing_wrongly_matched": 1e4 * int((matched & off).sum()) / n,
        "per10k_registered_wrongly_unmatched": 1e4 * int((on & ~matched).sum()) / n,
    }
