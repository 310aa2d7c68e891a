"""Cryptographic long-term keys (CLKs): one hardened Bloom filter per child, made by an LA.

A record's forename, surname, date of birth and postcode are cut into tokens (padded bigrams of
the normalised names and postcode; day, month and year of birth), each token sets ``k`` bits of
one record-level filter (Schnell, Bachteler and Reiher 2009, 2011) at keyed positions
(``crypto.clk.TokenHasher``). Against the frequency and pattern-mining attacks on Bloom filters
(Kuzu et al. 2011; Niedermeyer et al. 2014; Christen et al. 2018; Vidanage et al. 2020) the
filter is hardened as Schnell, Borgs and Encarnação (2016) describe:

- *record level*: every field in one filter, so no field's filter can be counted on its own;
- *salting*: name and postcode tokens are salted with the year of birth, so "jones" sets
  different bits for every birth year and its frequency is split twelve ways;
- *balancing*: the filter is followed by its complement and the whole keyed-permuted, so every
  encoding has exactly ``length`` bits set whatever the name's length;
- *BLIP* (Schnell and Borgs 2016): every bit is flipped with probability ``flip``, fresh
  randomness per record, so two encodings of the same child differ and no bit is certain.

Each distinct token is hashed once and each distinct field value built once, then records are
assembled from those rows by index: all of Wales takes seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cme_pipeline.crypto.clk import TokenHasher
from cme_pipeline.matching.normalise import (
    as_text,
    given_key,
    map_unique,
    postcode_parts,
    surname_key,
)

_CHUNK = 20_000


@dataclass(frozen=True)
class ClkConfig:
    """How a CLK is built. Every LA of a check must use the same one."""

    length: int = 1024  # bits before balancing (the encoding has twice as many)
    k_forename: int = 10  # positions per forename bigram
    k_surname: int = 10
    k_middle: int = 6
    k_sex: int = 10
    k_dob: int = 40  # for the whole date of birth
    k_dob_part: int = 0  # per day, month and year token (partial credit for a mistyped date)
    k_postcode: int = 6
    # Whole-token agreement on the postcode's district (CF10) and area (CF): a child who moved
    # within an area still shares it with the register's old address. Off by default: with
    # k_middle=12, k_sex=20 and 20 each, the best score of a child on no register fell as much
    # as the moved children's rose, so at the same safety margin no more were found
    # (docs/cross-la.md, "Telling a child who moved from a namesake").
    k_district: int = 0
    k_area: int = 0
    salt_by_year: bool = True
    # Balancing halves how far apart true and false pairs lie in Dice (benchmarks/cross_la.py):
    # off by default, on as an option for a deployment that prefers it.
    balance: bool = False
    flip: float = 0.01  # BLIP: probability that each bit is flipped
    # A missing postcode sets as many bits as a postcode would, at random positions (fresh per
    # record): it then counts as disagreeing, never as agreeing. Left empty, a register record
    # with no postcode scored a namesake on no register above the removal threshold (0.87: the
    # postcode's bits missing from the denominator), higher than a child who moved (held-out
    # seed 20261001, benchmarks/README.md).
    missing_postcode_random: bool = True

    @property
    def bits(self) -> int:
        """Bits of an encoding (after balancing)."""
        return self.length * (2 if self.balance else 1)


def bigrams(value: str) -> list[str]:
    """Padded bigrams of a normalised value (``jo`` -> ``_j``, ``jo``, ``o_``)."""
    padded = f"_{value}_"
    return [padded[i : i + 2] for i in range(len(padded) - 1)] if value else []


def _rows(
    values: np.ndarray, tokens_of: Iterable[list[str]], hasher: TokenHasher, k: int, length: int
) -> np.ndarray:
    """Packed filter rows, one per distinct value, from each distinct value's tokens."""
    token_lists = list(tokens_of)
    distinct = sorted({t for ts in token_lists for t in ts})
    index = {t: i for i, t in enumerate(distinct)}
    positions = hasher.positions(distinct, k, length) if distinct else np.zeros((0, k), dtype=np.int64)
    out = np.zeros((len(values), length // 8), dtype=np.uint8)
    for start in range(0, len(values), _CHUNK):
        part = token_lists[start : start + _CHUNK]
        bits = np.zeros((len(part), length), dtype=bool)
        for row, ts in enumerate(part):
            if ts:
                bits[row, positions[[index[t] for t in ts]].ravel()] = True
        out[start : start + len(part)] = np.packbits(bits, axis=1)
    return out


_POSTCODE_BIGRAMS = 8  # padded bigrams of a normalised postcode such as cf101aa


def _random_bits(packed: np.ndarray, rows: np.ndarray, k: int, rng: np.random.Generator) -> None:
    """Set ``k`` random bits (with repeats, as hashed tokens collide) in each of ``rows``."""
    if not rows.size or k <= 0:
        return
    bits = np.unpackbits(packed[rows], axis=1).astype(bool)
    bits[np.repeat(np.arange(rows.size), k), rng.integers(0, bits.shape[1], rows.size * k)] = True
    packed[rows] = np.packbits(bits, axis=1)


def _postcode_area(text: str) -> str:
    """The letters a postcode's district starts with (``CF10`` -> ``cf``); "" when none."""
    return re.sub(r"[^a-z].*", "", postcode_parts(text)[2].lower())


def _field(keys: np.ndarray, tokens: Callable[[str], list[str]], hasher: TokenHasher, k: int, length: int) -> np.ndarray:
    codes, uniques = pd.factorize(keys)
    rows = _rows(uniques, (tokens(u) for u in uniques), hasher, k, length)
    return rows[codes]


def encode(frame: pd.DataFrame, hasher: TokenHasher, config: ClkConfig | None = None,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """The CLKs of a frame's records: uint8 array of shape (len(frame), config.bits // 8).

    Args:
        frame: records with ``forename``, ``surname``, ``dob`` (ISO) and ``postcode`` (any may be
            missing or empty).
        hasher: the check's keyed hasher.
        config: how to build them (the same at every LA).
        rng: randomness for BLIP (default: fresh from the OS).
    """
    config = config or ClkConfig()
    rng = rng or np.random.default_rng()
    n = len(frame)
    length = config.length
    # Normalised once per distinct value, not per record.
    forename = map_unique(as_text(frame.get("forename"), n), given_key)
    surname = map_unique(as_text(frame.get("surname"), n), surname_key)
    dates = pd.Series(as_text(frame.get("dob"), n), dtype=object)
    dob = dates.where(dates.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False).astype(bool), "").to_numpy(dtype=object)
    year = pd.Series(dob, dtype=object).str[:4].to_numpy(dtype=object) if config.salt_by_year else np.full(n, "", dtype=object)
    postcode = map_unique(as_text(frame.get("postcode"), n), lambda v: postcode_parts(v)[0].replace(" ", "").lower())

    def salted(tag: str) -> Callable[[str], list[str]]:
        def tokens(key: str) -> list[str]:
            salt, _, value = key.partition("|")
            return [f"{tag}|{salt}|{b}" for b in bigrams(value)]
        return tokens

    def dob_parts(d: str) -> list[str]:
        return [f"d|{d[8:]}", f"m|{d[5:7]}", f"y|{d[:4]}"] if d else []

    packed = _field(year + "|" + forename, salted("f"), hasher, config.k_forename, length)
    packed |= _field(year + "|" + surname, salted("s"), hasher, config.k_surname, length)
    if config.k_middle:
        middle = map_unique(as_text(frame.get("middle_names"), n), given_key)
        packed |= _field(year + "|" + middle, salted("i"), hasher, config.k_middle, length)
    if config.k_sex:
        sex = map_unique(as_text(frame.get("sex"), n), lambda v: v.strip().upper()[:1] if v.strip().upper()[:1] in ("M", "F") else "")
        packed |= _field(sex, lambda v: [f"x|{v}"] if v else [], hasher, config.k_sex, length)
    packed |= _field(dob, lambda d: [f"b|{d}"] if d else [], hasher, config.k_dob, length)
    if config.k_dob_part:
        packed |= _field(dob, dob_parts, hasher, config.k_dob_part, length)
    packed |= _field(year + "|" + postcode, salted("p"), hasher, config.k_postcode, length)
    if config.missing_postcode_random:
        _random_bits(packed, np.flatnonzero(postcode == ""), config.k_postcode * _POSTCODE_BIGRAMS, rng)
    if config.k_district:
        district = map_unique(as_text(frame.get("postcode"), n), lambda v: postcode_parts(v)[2].lower())
        packed |= _field(year + "|" + district, lambda key: [f"q|{key}"] if key.partition("|")[2] else [], hasher,
                         config.k_district, length)
    if config.k_area:
        area = map_unique(as_text(frame.get("postcode"), n), _postcode_area)
        packed |= _field(year + "|" + area, lambda key: [f"r|{key}"] if key.partition("|")[2] else [], hasher,
                         config.k_area, length)
    if not config.balance and config.flip == 0:
        return packed
    permutation = hasher.permutation(config.bits) if config.balance else None
    out = np.empty((n, config.bits // 8), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        part = packed[start : start + _CHUNK]
        if config.balance:
            part = np.concatenate([part, ~part], axis=1)
        bits = np.unpackbits(part, axis=1).astype(bool)
        if permutation is not None:
            bits = bits[:, permutation]
        if config.flip > 0:
            bits ^= rng.random(bits.shape, dtype=np.float32) < config.flip
        out[start : start + len(part)] = np.packbits(bits, axis=1)
    return out
