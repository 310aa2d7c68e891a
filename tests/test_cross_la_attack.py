"""Played as the linkage unit (or anyone holding what crosses between the LAs): the encodings of a
simulated population, a plaintext population like it (the public name frequencies), the scheme
but not the key. Two attacks from the literature (``bloom_attack``): frequency alignment of whole
encodings, and the frequent bit-pattern attack on tokens. Each must work against a naive encoding
(so the test can fail) and learn no more than a guess from the public frequencies against ours."""

from __future__ import annotations

import numpy as np
import pytest
from bloom_attack import align_patterns, blind_rate, random_guess_rate, reidentify

from cme_pipeline.crypto.clk import TokenHasher
from cme_pipeline.linkage import ClkConfig, encode, encode_middle
from cme_pipeline.linkage.encode import bigrams
from cme_pipeline.matching.normalise import surname_key
from cme_pipeline.simulate import simulate_la

# A Schnell et al. (2009) field-level filter of the surname alone: keyed, nothing else hardened.
NAIVE = ClkConfig(k_forename=0, k_middle=0, k_sex=0, k_dob=0, k_postcode=0, salt_by_year=False, flip=0.0)


@pytest.fixture(scope="module")
def population() -> tuple[object, list[str], list[str], list[str]]:
    victims = simulate_la("W06000015", children=4000, seed=1, year_start=2026).extract
    public = simulate_la("W06000016", children=4000, seed=2, year_start=2026).extract
    truth = [surname_key(s) for s in victims["surname"]]
    names = [surname_key(s) for s in public["surname"]]
    years = [d[:4] for d in public["dob"]]
    return victims, truth, names, [f"{y}|{n}" for y, n in zip(years, names, strict=True)]


def _rate(guesses: list[str], truth: list[str]) -> float:
    return float(np.mean(np.array(guesses) == np.array(truth)))


def _plain(name: str) -> list[str]:
    return [f"s||{b}" for b in bigrams(name)]


def _salted(year_name: str) -> list[str]:  # the attacker knows the scheme salts by year of birth
    year, _, name = year_name.partition("|")
    return [f"s|{year}|{b}" for b in bigrams(name)]


def test_frequency_attacks_learn_no_name_from_our_encodings(population: tuple[object, list[str], list[str], list[str]]) -> None:
    victims, truth, names, year_names = population
    hasher = TokenHasher(b"\x01" * 32, b"\x02" * 32)
    chance = random_guess_rate(truth, names)

    naive = encode(victims, hasher, NAIVE)
    cracked = align_patterns(naive, names)
    # the attack works: one surname in nine (a third on the 1830s names), far above blind guesses
    assert _rate(cracked, truth) > 0.1 and _rate(cracked, truth) > blind_rate(cracked, truth) + 0.05

    # What an LA sends to the linkage unit. The bit-pattern attack guesses the commonest surnames
    # for thousands of records; it has learned something only where it is right more often than
    # those same guesses handed to records at random (blind_rate; on these names it is right
    # exactly as often, docs/cross-la.md). BLIP's draw is fixed so the figure is reproducible.
    ours = encode(victims, hasher, rng=np.random.default_rng(0))
    aligned = align_patterns(ours, names)
    assert all(g == "" for g in aligned)  # every encoding is unique: no frequency to align
    guesses = [g.partition("|")[2] for g in reidentify(ours, year_names, _salted, ClkConfig().k_surname)]
    assert any(guesses) and _rate(guesses, truth) <= blind_rate(guesses, truth) + 0.005
    unsalted = encode(victims, hasher, ClkConfig(salt_by_year=False))
    plain = reidentify(unsalted, names, _plain, ClkConfig().k_surname)
    assert _rate(plain, truth) <= blind_rate(plain, truth) + 0.005
    assert chance < 0.02  # guessing at random by the public frequencies, for the record


def test_the_second_encoding_learns_no_name_either(population: tuple[object, list[str], list[str], list[str]]) -> None:
    # The records with a middle name are also sent without the postcode (linkage.middle): fewer
    # tokens, so more of each encoding is the names'. The same two attacks on those encodings.
    victims, truth, names, year_names = population
    rows, ours = encode_middle(victims, TokenHasher(b"\x05" * 32, b"\x06" * 32), rng=np.random.default_rng(0))  # type: ignore[arg-type]
    assert len(rows) > 1000
    mine = [truth[i] for i in rows]
    assert all(g == "" for g in align_patterns(ours, names))
    guesses = [g.partition("|")[2] for g in reidentify(ours, year_names, _salted, ClkConfig().k_surname)]
    assert any(guesses) and _rate(guesses, mine) <= blind_rate(guesses, mine) + 0.005


def test_what_else_crosses_gives_no_frequency_to_count(population: tuple[object, list[str], list[str], list[str]]) -> None:
    # The moves pass's NHS-number tags are unique per child (nothing to align with a public
    # frequency list) and unrelated under another check's secret; household labels are random per
    # check (tests/test_cross_la.py), so neither adds to what the attacks above can count.
    victims = population[0]
    numbers = [str(n) for n in victims["nhs_number"]]  # type: ignore[index]
    one = TokenHasher(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32).tags(numbers)
    other = TokenHasher(b"\x01" * 32, b"\x02" * 32, b"\x04" * 32).tags(numbers)
    assert len(set(one.tolist())) == len(numbers)  # every tag unique: no frequency to align
    assert not set(one.tolist()) & set(other.tolist())  # two checks' tags cannot be joined
