"""A frequent-pattern attack on Bloom-filter encodings, as Christen, Ranbaduge, Vatsalan and Schnell
(2018, "Precise and fast cryptanalysis for Bloom filter based privacy-preserving record linkage")
describe it, simplified: the attacker holds the encodings and a plaintext population like the
encoded one (a public name-frequency list), knows the encoding scheme but not its key.

1. *Find each frequent token's bits.* For the tokens of the public list, most frequent first, find
   the set of bit positions that are set together in (about) as many encodings as the token's
   frequency predicts: greedily, start from all encodings, repeatedly keep the encodings that also
   have the position set in the most of them, until ``k`` positions are chosen or the encodings
   left fall below the token's expected count. Positions found for one token are not attributed again; a token with at least half its
   positions found counts as found (the rest collide with an earlier token's).
2. *Decode.* An encoding holds a token when every one of its positions is set. Guess, for each
   encoding, the surname of the public list whose identified tokens best agree (Jaccard) with
   the tokens the encoding holds (ties: the more frequent name); no guess below ``min_jaccard``.

Success rate: the share of encodings whose true surname is the guess.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np


def _bits(encodings: np.ndarray) -> np.ndarray:
    return np.unpackbits(encodings, axis=1).astype(bool)


def find_token_positions(bits: np.ndarray, token_freq: list[tuple[str, float]], k: int,
                         slack: float = 0.6) -> dict[str, np.ndarray]:
    """Step 1: the bit positions the attacker attributes to each token.

    Args:
        bits: the encodings as a boolean matrix (records x positions).
        token_freq: (token, share of records holding it), most frequent first.
        k: positions per token in the scheme.
        slack: stop when fewer than ``slack`` times the token's expected encodings are left.
    """
    n = len(bits)
    used = np.zeros(bits.shape[1], dtype=bool)
    found: dict[str, np.ndarray] = {}
    for token, share in token_freq:
        rows = np.ones(n, dtype=bool)
        chosen: list[int] = []
        for _ in range(k):
            counts = bits[rows].sum(axis=0)
            counts[used] = -1
            counts[chosen] = -1
            p = int(np.argmax(counts))
            if counts[p] < slack * share * n:
                break
            chosen.append(p)
            rows &= bits[:, p]
        if len(chosen) >= k // 2:  # some of its positions collide with an earlier token's
            found[token] = np.array(chosen)
            used[chosen] = True
    return found


def reidentify(encodings: np.ndarray, public_surnames: list[str], tokens_of: Callable[[str], list[str]],
               k: int, max_tokens: int = 60, min_jaccard: float = 0.5) -> list[str]:
    """Steps 1 and 2: the attacker's surname guess for every encoding ("" for no guess).

    Args:
        encodings: packed encodings (what crossed to the linkage unit).
        public_surnames: the attacker's plaintext population (one surname per person).
        tokens_of: the scheme's tokens of a surname (the attacker knows the scheme, not the key).
        k: positions per token.
        max_tokens: how many of the most frequent tokens to look for.
        min_jaccard: guess only when the best name's identified tokens and the encoding's held
            tokens overlap at least this much (Jaccard).
    """
    bits = _bits(encodings)
    counts = Counter(t for s in public_surnames for t in set(tokens_of(s)))
    total = len(public_surnames)
    freq = [(t, c / total) for t, c in counts.most_common(max_tokens)]
    positions = find_token_positions(bits, freq, k)
    tokens = list(positions)
    held = np.column_stack([bits[:, positions[t]].all(axis=1) for t in tokens]) if tokens else np.zeros((len(bits), 0), bool)
    index = {t: i for i, t in enumerate(tokens)}
    names, rows = [], []
    for name, _count in Counter(public_surnames).most_common():  # most frequent first: ties go to it
        row = np.zeros(len(tokens), dtype=bool)
        row[[index[t] for t in set(tokens_of(name)) if t in index]] = True
        if row.any():
            names.append(name)
            rows.append(row)
    if not names:
        return [""] * len(bits)
    cand = np.array(rows, dtype=np.int32)
    inter = held.astype(np.int32) @ cand.T
    union = held.sum(axis=1, keepdims=True) + cand.sum(axis=1)[None, :] - inter
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    best = jaccard.argmax(axis=1)  # argmax takes the first, i.e. the more frequent name, on a tie
    guesses = [names[b] if jaccard[i, b] >= min_jaccard else "" for i, b in enumerate(best)]
    return guesses


def align_patterns(encodings: np.ndarray, public_surnames: list[str], min_count: int = 2) -> list[str]:
    """The frequency-alignment attack (Kuzu et al. 2011; the first stage of Christen et al. 2018):
    identical encodings are counted, and the i-th most frequent encoding is guessed to be the
    i-th most frequent name of the public list. Encodings seen fewer than ``min_count`` times get
    no guess (a unique encoding has no frequency to align).

    Args:
        encodings: packed encodings.
        public_surnames: the attacker's plaintext population.
        min_count: the fewest copies of an encoding for a guess.
    """
    _, inverse, counts = np.unique(encodings, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    ranked_names = [name for name, _ in Counter(public_surnames).most_common()]
    order = np.argsort(-counts, kind="stable")
    guess_of = {int(p): ranked_names[i] for i, p in enumerate(order[: len(ranked_names)]) if counts[p] >= min_count}
    return [guess_of.get(int(p), "") for p in inverse]


def random_guess_rate(true_surnames: list[str], public_surnames: list[str]) -> float:
    """How often guessing names at random by their public frequency is right (no encodings needed)."""
    public = Counter(public_surnames)
    total = sum(public.values())
    truth = Counter(true_surnames)
    return sum(c * public[name] / total for name, c in truth.items()) / len(true_surnames)


def blind_rate(guesses: list[str], true_surnames: list[str]) -> float:
    """How often the same guesses would be right handed to records at random: each guess of name
    ``g`` scores the share of ``g`` among the true surnames. An attack that learned nothing from
    the encodings (it only guesses common names often) scores this; its excess is what it learned.
    ("" is no guess.)"""
    count, n = Counter(true_surnames), len(true_surnames)
    return sum(count[g] / n for g in guesses if g) / n
