"""Properties of the matching outcomes that must hold for any population and any noise.

Hypothesis draws small simulated LAs (random seed, size, area and noise scaled by a random
factor, sometimes with a child registered twice with the GP or twice on a register) and checks
what the minimisation step relies on: every health record gets exactly one outcome, no register
record is matched twice, nothing retained is also matched, twins are never matched to each
other's records; and, for ``link`` alone, the pairs file contract.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fixtures_matching import background_people
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cme_pipeline.matching import (
    LinkConfig,
    health_to_canonical,
    link,
    match_registers,
    register_to_canonical,
)
from cme_pipeline.nhs_number import generate_test_numbers
from cme_pipeline.schemas import CANONICAL_PERSON, LINK_PAIRS, MATCH_OUTCOME, OUTCOMES
from cme_pipeline.simulate import simulate_la
from cme_pipeline.simulate.la import SimulatedLA
from cme_pipeline.simulate.noise import NoiseConfig

PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
AREAS = ("W06000015", "W06000002", "W06000024", "W06000011")  # Cardiff, Gwynedd, Merthyr, Swansea


@st.composite
def simulated(draw: st.DrawFn) -> SimulatedLA:
    """A small simulated LA with noise anywhere from none to six times the default."""
    factor = draw(st.sampled_from([0.0, 1.0, 3.0]) | st.floats(0.0, 6.0))
    return simulate_la(
        draw(st.sampled_from(AREAS)),
        children=draw(st.integers(1, 90)),
        seed=draw(st.integers(0, 2**31)),
        noise=NoiseConfig().scaled(factor),
        year_start=2026,
    )


@st.composite
def with_duplicates(draw: st.DrawFn, sim: SimulatedLA) -> SimulatedLA:
    """The same children twice: some on the extract under a second NHS number (a duplicate GP
    registration), some twice on the school census (two pupil records)."""
    extract, census = sim.extract, sim.registers["school_census"]
    k = draw(st.integers(0, min(3, len(extract))))
    if k:
        again = extract.sample(k, random_state=draw(st.integers(0, 999))).copy()
        again["nhs_number"] = generate_test_numbers(k + len(extract), np.random.default_rng(k))[-k:]
        again = again[~again["nhs_number"].isin(extract["nhs_number"])]
        extract = pd.concat([extract, again], ignore_index=True)
    j = draw(st.integers(0, min(3, len(census))))
    registers = dict(sim.registers)
    if j:
        twice = census.sample(j, random_state=draw(st.integers(0, 999))).copy()
        twice["record_id"] = twice["record_id"] + "-dup"
        registers["school_census"] = pd.concat([census, twice], ignore_index=True)
    return SimulatedLA(sim.la_code, sim.extract_date, sim.year_start, extract, registers, sim.truth, sim.register_truth)


def _outcomes(sim: SimulatedLA, config: LinkConfig) -> pd.DataFrame:
    health = health_to_canonical(sim.extract)
    registers = {s: register_to_canonical(f) for s, f in sim.registers.items()}
    return match_registers(health, registers, config)


def _check_contract(
    health_ids: pd.Series, registers: dict[str, pd.DataFrame], out: pd.DataFrame, config: LinkConfig
) -> None:
    """What holds for any input: one consistent outcome per health record, each register record
    matched at most once."""
    # received = matched + possible + unmatched: one row per health record, in input order
    assert tuple(out.columns) == MATCH_OUTCOME
    assert out["health_record_id"].tolist() == health_ids.tolist() and out["health_record_id"].is_unique
    assert set(out["outcome"]) <= set(OUTCOMES)
    counts = out["outcome"].value_counts()
    assert sum(int(counts.get(o, 0)) for o in OUTCOMES) == len(health_ids)

    # each outcome is consistent with its candidate and the thresholds
    matched, possible, unmatched = (out[out["outcome"] == o] for o in OUTCOMES)
    assert out["probability"].between(0.0, 1.0).all()
    assert (matched["probability"] >= config.match_threshold).all()
    assert (possible["probability"] >= config.possible_threshold).all()
    assert (unmatched["register"] == "").all() and (unmatched["register_record_id"] == "").all()
    assert (unmatched["probability"] == 0.0).all()
    for _, row in pd.concat([matched, possible]).iterrows():
        assert row["register_record_id"] in set(registers[row["register"]]["record_id"])

    # every register record is matched at most once
    assert not matched[["register", "register_record_id"]].duplicated().any()


def _check_outcomes(sim: SimulatedLA, out: pd.DataFrame, config: LinkConfig) -> None:
    health_ids = health_to_canonical(sim.extract)["record_id"]
    _check_contract(health_ids, sim.registers, out, config)
    matched, possible, unmatched = (out[out["outcome"] == o] for o in OUTCOMES)

    # retained (possible + unmatched) and matched are disjoint, by row and by NHS number
    nhs = dict(zip(health_ids, sim.extract["nhs_number"], strict=True))
    retained = pd.concat([possible, unmatched])
    assert not set(retained["health_record_id"]) & set(matched["health_record_id"])
    assert not {nhs[h] for h in retained["health_record_id"]} & {nhs[h] for h in matched["health_record_id"]}

    # twins are never matched to each other's register records
    twin_of = sim.truth.set_index("nhs_number")["twin"]
    true_nhs = sim.register_truth.set_index(["register", "record_id"])["nhs_number"]
    for _, row in matched.iterrows():
        child = nhs[row["health_record_id"]]
        label = twin_of.get(child, "")
        record_id = row["register_record_id"].removesuffix("-dup")
        owner = true_nhs.get((row["register"], record_id), "")
        if label and owner:
            event("a matched twin checked")
            siblings = set(twin_of.index[twin_of == label]) - {child}
            assert owner not in siblings, "a twin was matched to the other twin's register record"


@PROPERTY
@given(simulated())
def test_every_health_record_has_one_consistent_outcome(sim: SimulatedLA) -> None:
    config = LinkConfig()
    _check_outcomes(sim, _outcomes(sim, config), config)


@settings(PROPERTY, max_examples=20)
@given(st.data())
def test_outcomes_hold_with_duplicate_registrations(data: st.DataObject) -> None:
    sim = data.draw(with_duplicates(data.draw(simulated())))
    config = LinkConfig()
    _check_outcomes(sim, _outcomes(sim, config), config)


@settings(PROPERTY, max_examples=15)
@given(simulated(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_outcomes_follow_any_thresholds_and_are_reproducible(sim: SimulatedLA, a: float, b: float) -> None:
    config = LinkConfig(possible_threshold=min(a, b), match_threshold=max(a, b))
    out = _outcomes(sim, config)
    _check_outcomes(sim, out, config)
    pd.testing.assert_frame_equal(out, _outcomes(sim, config))


@settings(PROPERTY, max_examples=15)
@given(simulated())
def test_a_matched_outcome_is_a_scored_pair_of_link(sim: SimulatedLA) -> None:
    # ``match_registers`` decides by the probability given the one-to-one assignment
    # (matching/decide.py), so a matched child's pair may be ``possible`` in ``link``'s pairwise
    # bands; it is always one of the pairs ``link`` scores.
    health = health_to_canonical(sim.extract)
    out = _outcomes(sim, LinkConfig())
    for source, frame in sim.registers.items():
        pairs = link(health, register_to_canonical(frame))
        matches = set(map(tuple, pairs[["left_id", "right_id"]].to_numpy()))
        mine = out[(out["outcome"] == "matched") & (out["register"] == source)]
        assert set(zip(mine["health_record_id"], mine["register_record_id"], strict=True)) <= matches


def test_outcomes_hold_at_the_edges() -> None:
    sim = simulate_la("W06000015", children=5, seed=1, year_start=2026)
    config = LinkConfig()
    nothing = {s: f.iloc[0:0] for s, f in sim.registers.items()}
    for registers in (nothing, {}):
        edge = SimulatedLA(sim.la_code, sim.extract_date, sim.year_start, sim.extract, registers, sim.truth, sim.register_truth)
        out = _outcomes(edge, config)
        _check_outcomes(edge, out, config)
        assert (out["outcome"] == "unmatched").all()
    empty = SimulatedLA(sim.la_code, sim.extract_date, sim.year_start, sim.extract.iloc[0:0], sim.registers, sim.truth, sim.register_truth)
    _check_outcomes(empty, _outcomes(empty, config), config)


# -- link on its own -----------------------------------------------------------------------------


def _check_pairs(left: pd.DataFrame, right: pd.DataFrame, pairs: pd.DataFrame, config: LinkConfig) -> None:
    assert tuple(pairs.columns) == LINK_PAIRS
    assert set(pairs["left_id"]) <= set(left["record_id"]) and set(pairs["right_id"]) <= set(right["record_id"])
    assert not pairs[["left_id", "right_id"]].duplicated().any()
    p = pairs["probability"].astype(float)
    assert p.between(0.0, 1.0).all() and (p >= config.possible_threshold).all()
    assert p.is_monotonic_decreasing
    assert set(pairs["band"]) <= {"match", "possible"}
    assert (p[pairs["band"] == "match"] >= config.match_threshold).all()
    matches = pairs[pairs["band"] == "match"]
    assert matches["left_id"].is_unique and matches["right_id"].is_unique


@st.composite
def thresholds(draw: st.DrawFn) -> LinkConfig:
    a, b = draw(st.floats(0.0, 1.0)), draw(st.floats(0.0, 1.0))
    return LinkConfig(possible_threshold=min(a, b), match_threshold=max(a, b))


@PROPERTY
@given(simulated(), thresholds())
def test_link_pairs_keep_the_contract(sim: SimulatedLA, config: LinkConfig) -> None:
    health = health_to_canonical(sim.extract)
    census = register_to_canonical(sim.registers["school_census"])
    _check_pairs(health, census, link(health, census, config), config)


_VALUE = st.text(max_size=15) | st.sampled_from(
    ["", "2014-02-30", "31/12/2015", "0000-00-00", "9999-99-99", "=HYPERLINK(\"x\")", "Siân", "ap Rhys",
     "O'Brien-Jones", "\u202eevil", "CF10 1AA", "cf101aa", "X", "m", "f", "  ", "\x00", "Ⅻ", "ß" * 40]
)


@st.composite
def people(draw: st.DrawFn, prefix: str) -> pd.DataFrame:
    """A few records of arbitrary (often unparseable) values among ordinary children."""
    n = draw(st.integers(0, 8))
    rows = [{c: draw(_VALUE) for c in CANONICAL_PERSON[1:]} for _ in range(n)]
    odd = pd.DataFrame(rows, columns=list(CANONICAL_PERSON[1:])).assign(record_id=[f"{prefix}x{i}" for i in range(n)])
    crowd = background_people(draw(st.integers(0, 40)), seed=draw(st.integers(0, 50)), prefix=prefix)
    frame = pd.concat([odd[list(CANONICAL_PERSON)], crowd], ignore_index=True)
    absent = draw(st.lists(st.sampled_from(CANONICAL_PERSON[1:]), unique=True, max_size=3))
    return frame.drop(columns=absent)


@PROPERTY
@given(people("L"), people("R"), thresholds())
def test_link_on_arbitrary_values_keeps_the_contract(left: pd.DataFrame, right: pd.DataFrame, config: LinkConfig) -> None:
    # unparseable values count as missing, never a crash (DESIGN.md §3)
    _check_pairs(left, right, link(left, right, config), config)


TWIN_NAMES = ("Bethan", "Osian", "Zara", "Iolo", "Mabli", "Kacper", "Una", "Tegid")


@st.composite
def with_unregistered_twins(draw: st.DrawFn, sim: SimulatedLA) -> tuple[SimulatedLA, set[str]]:
    """Each of a few registered children gets a twin on the extract who is on no register: same
    surname, dob, sex and address, another forename, another NHS number. The twin's best
    candidate is the sibling's record; taking it would delete a missing child."""
    on_register = sim.truth.index[sim.truth["registers"] != ""]
    k = draw(st.integers(1, max(1, min(4, len(on_register)))))
    if len(on_register) == 0:
        return sim, set()
    rows = sim.extract.loc[draw(st.lists(st.sampled_from(list(on_register)), min_size=k, max_size=k, unique=True))]
    twins = rows.copy()
    twins["forename"] = [
        draw(st.sampled_from([n for n in TWIN_NAMES if n[0] != f[:1].upper()])) for f in rows["forename"]
    ]
    twins["middle_names"] = ""
    numbers = [n for n in generate_test_numbers(len(sim.extract) + 20, np.random.default_rng(99))
               if n not in set(sim.extract["nhs_number"])]
    twins["nhs_number"] = numbers[: len(twins)]
    extract = pd.concat([sim.extract, twins], ignore_index=True)
    changed = SimulatedLA(sim.la_code, sim.extract_date, sim.year_start, extract, sim.registers, sim.truth, sim.register_truth)
    return changed, set(twins["nhs_number"])


@settings(PROPERTY, max_examples=20)
@given(st.data())
def test_a_twin_on_no_register_is_never_matched(data: st.DataObject) -> None:
    sim, unregistered = data.draw(with_unregistered_twins(data.draw(simulated())))
    config = LinkConfig()
    out = _outcomes(sim, config)
    _check_outcomes(sim, out, config)
    nhs = out["health_record_id"].map(dict(zip(health_to_canonical(sim.extract)["record_id"], sim.extract["nhs_number"], strict=True)))
    assert not (nhs.isin(unregistered) & (out["outcome"] == "matched")).any()


@PROPERTY
@given(simulated(), people("S"), people("E"))
def test_outcomes_hold_whatever_the_registers_hold(sim: SimulatedLA, census: pd.DataFrame, ehe: pd.DataFrame) -> None:
    # register records are typed by clerks: any value, missing columns, parts of real children
    census = pd.concat([census, register_to_canonical(sim.registers["school_census"]).head(10)], ignore_index=True)
    registers = {"school_census": census.fillna(""), "ehe": ehe}
    health = health_to_canonical(sim.extract)
    out = match_registers(health, registers)
    _check_contract(health["record_id"], registers, out, LinkConfig())
