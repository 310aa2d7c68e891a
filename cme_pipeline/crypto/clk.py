"""The LAs' shared secret of one cross-LA check, and the keyed hashing of Bloom-filter encodings.

Every LA of a check encodes its children under one secret the LAs share for that check only
(``cross_la/<round>`` in the key store): created when the check starts, destroyed when it ends,
so an encoding that outlives the check (a copy at the linkage unit, a log) can no longer be
compared with a fresh encoding of a guessed name. The linkage unit never holds it.

Hashing follows Schnell, Bachteler and Reiher (2009) with the hardening of Niedermeyer et al.
(2014) and Schnell, Borgs and Encarnação (2016): each token's bit positions come from a keyed
HMAC-SHA256 (an attacker without the key cannot compute them; "random hashing", not the double
hashing whose structure Niedermeyer et al. exploited), and the positions of a balanced filter
are shuffled by a keyed permutation. Keys never leave this package: callers get a
``TokenHasher`` that maps tokens to positions.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import numpy as np

from cme_pipeline.crypto.envelope import ensure_secret
from cme_pipeline.crypto.keystore import KeyStore

HASH_CONTEXT = b"cme-cross-la-clk-hash/1"
PERMUTATION_CONTEXT = b"cme-cross-la-clk-permutation/1"
TAG_CONTEXT = b"cme-cross-la-nhs-tag/1"
TAG_BYTES = 16


def round_secret_name(round_id: str) -> str:
    """Key-store name of one cross-LA check's shared secret."""
    return f"cross_la/{round_id}"


def create_round_secret(keys: KeyStore, round_id: str) -> None:
    """Create the check's shared secret (idempotent: a rerun of the same check reuses it)."""
    ensure_secret(keys, round_secret_name(round_id))


def destroy_round_secret(keys: KeyStore, round_id: str) -> bool:
    """Destroy the check's shared secret; True if it existed."""
    return keys.destroy(round_secret_name(round_id))


@dataclass(frozen=True)
class TokenHasher:
    """Keyed token-to-bit-position hashing of one check (the key stays inside)."""

    _key: bytes
    _permutation_key: bytes
    _tag_key: bytes = b""

    def positions(self, tokens: list[str], k: int, length: int) -> np.ndarray:
        """``k`` bit positions in ``[0, length)`` of each token: an array of shape (len(tokens), k).

        Args:
            tokens: distinct tokens (callers hash each distinct token once, not once per record).
            k: positions per token.
            length: the filter's length in bits (at most 65536).
        """
        out = np.empty((len(tokens), k), dtype=np.int64)
        blocks = (k + 15) // 16  # one HMAC gives sixteen 16-bit positions
        for i, token in enumerate(tokens):
            data = token.encode("utf-8")
            digest = b"".join(
                hmac.new(self._key, bytes([b]) + data, hashlib.sha256).digest() for b in range(blocks)
            )
            out[i] = np.frombuffer(digest, dtype=">u2")[:k]
        return out % length

    def permutation(self, length: int) -> np.ndarray:
        """A keyed permutation of ``length`` positions (the same for every LA of the check)."""
        seed = int.from_bytes(hmac.new(self._permutation_key, str(length).encode(), hashlib.sha256).digest(), "big")
        return np.random.default_rng(seed).permutation(length)

    def tags(self, values: list[str]) -> np.ndarray:
        """A keyed tag of each value (an NHS number), ``TAG_BYTES`` bytes each; empty values get
        b"" (never equal to a tag). Lives only as long as the check's secret does.

        Args:
            values: the values to tag.
        """
        if not self._tag_key:
            raise ValueError("this hasher has no tag key")
        out = [hmac.new(self._tag_key, v.encode("utf-8"), hashlib.sha256).digest()[:TAG_BYTES] if v else b""
               for v in values]
        return np.array(out, dtype=f"S{TAG_BYTES}")

    def __repr__(self) -> str:  # never show key bytes
        return "TokenHasher()"


def token_hasher(keys: KeyStore, round_id: str, encoding: str = "") -> TokenHasher:
    """The hasher of one check, from its shared secret.

    Args:
        keys: the key store holding the check's secret.
        round_id: the check's id.
        encoding: "" for the main encoding; another name (``"middle"``) gets keys of its own, so
            that the two encodings of one record share no bit position: were they hashed alike,
            the bits in one and not the other would be the postcode's alone, a field-level
            filter the record-level encoding exists to avoid.

    Raises:
        KeyUnavailable: the check's secret was never created or has been destroyed.
    """
    name = round_secret_name(round_id)
    suffix = f"/{encoding}".encode() if encoding else b""
    return TokenHasher(keys.derive(name, HASH_CONTEXT + suffix), keys.derive(name, PERMUTATION_CONTEXT + suffix),
                       keys.derive(name, TAG_CONTEXT + suffix))
