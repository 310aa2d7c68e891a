"""The simulator's promises: realistic structure, stated coverage and noise, consistent truth."""

from __future__ import annotations

import datetime as dt
from dataclasses import fields, replace

import numpy as np
import pandas as pd
import pytest

from cme_pipeline import nhs_number
from cme_pipeline.schemas import HEALTH_EXTRACT, REGISTER_SOURCES, register_columns
from cme_pipeline.school_age import compulsory_dob_window
from cme_pipeline.simulate import CoverageConfig, NoiseConfig, SimulatedLA, simulate_la
from cme_pipeline.simulate.population import FamilyConfig
from cme_pipeline.simulate.wales import split_children

N = 20_000
YEAR = 2026


@pytest.fixture(scope="module")
def cardiff() -> SimulatedLA:
    return simulate_la("W06000015", children=N, seed=11, year_start=YEAR)


def _within(observed: float, expected: float, n: int, sigmas: float = 4.0) -> bool:
    # Binomial tolerance: the simulator is random, the rates are its parameters.
    sd = max(np.sqrt(expected * (1 - expected) / n), 1e-4)
    return abs(observed - expected) <= sigmas * sd + 0.002


def test_extract_has_exactly_the_contract_columns_and_valid_numbers(cardiff: SimulatedLA) -> None:
    assert tuple(cardiff.extract.columns) == HEALTH_EXTRACT
    assert len(cardiff.extract) == N
    numbers = cardiff.extract["nhs_number"]
    assert numbers.is_unique
    assert numbers.str.startswith("999").all()
    assert nhs_number.valid_mask(numbers.tolist()).all()


def test_dates_of_birth_are_of_compulsory_school_age(cardiff: SimulatedLA) -> None:
    lo, hi = compulsory_dob_window(YEAR)
    dob = pd.to_datetime(cardiff.extract["dob"]).dt.date
    assert dob.min() >= lo and dob.max() <= hi


def test_registers_have_their_contract_columns(cardiff: SimulatedLA) -> None:
    for source in REGISTER_SOURCES:
        frame = cardiff.registers[source]
        assert tuple(frame.columns) == register_columns(source)
        assert frame["record_id"].is_unique


def test_about_94_percent_are_on_some_register(cardiff: SimulatedLA) -> None:
    coverage = CoverageConfig()
    on_register = (cardiff.truth["registers"] != "").mean()
    expected = sum(coverage.on_register_rates().values())
    assert _within(on_register, expected, N)
    reasons = cardiff.truth.loc[cardiff.truth["registers"] == "", "reason"].value_counts(normalize=True)
    off = coverage.off_register_rates()
    for reason, rate in off.items():
        assert _within(reasons[reason], rate / sum(off.values()), int(N * 0.06), sigmas=5)


def test_each_register_coverage_matches_its_rate(cardiff: SimulatedLA) -> None:
    coverage = CoverageConfig()
    rt = cardiff.register_truth[cardiff.register_truth["nhs_number"] != ""]
    children_on = rt.groupby("register")["nhs_number"].nunique() / N
    rates = coverage.on_register_rates()
    census = rates["school_census:maintained"] + rates["school_census:independent"]
    assert _within(children_on["school_census"], census, N)
    assert _within(children_on["eotas"], rates["eotas"] + census * coverage.dual_eotas, N)
    assert _within(children_on["ehe"], rates["ehe"], N)
    assert _within(children_on["cme"], rates["cme"] + rates["ehe"] * coverage.dual_cme, N)
    register_only = (cardiff.register_truth["nhs_number"] == "").sum() / N
    assert _within(register_only, coverage.register_only, N)


@pytest.mark.parametrize(
    "kind",
    ["forename_typo", "surname_typo", "surname_change", "moved_house", "dob_digit_slip",
     "missing_postcode", "missing_sex", "upper_case"],
)
def test_unconditional_noise_rates_match_parameters(cardiff: SimulatedLA, kind: str) -> None:
    labels = cardiff.register_truth["noise"].str.split(";")
    observed = labels.map(lambda xs: kind in xs).mean()
    assert _within(observed, getattr(NoiseConfig(), kind), len(labels))


def test_heavy_noise_doubles_the_rates() -> None:
    heavy = NoiseConfig().scaled(2.0)
    assert heavy.families == NoiseConfig().families  # family structure is not a per-record rate
    for f in fields(NoiseConfig):
        if f.name == "families":
            continue
        assert getattr(heavy, f.name) == pytest.approx(min(1.0, 2 * getattr(NoiseConfig(), f.name)))
    sim = simulate_la("W06000002", children=8000, seed=3, noise=heavy, year_start=YEAR)
    labels = sim.register_truth["noise"].str.split(";")
    assert _within(labels.map(lambda xs: "moved_house" in xs).mean(), 0.10, len(labels))


def _joined(sim: SimulatedLA) -> pd.DataFrame:
    """Register records of extract children, side by side with their health record."""
    rows = []
    for source in REGISTER_SOURCES:
        rows.append(sim.registers[source].assign(register=source))
    registers = pd.concat(rows, ignore_index=True)
    rt = sim.register_truth[sim.register_truth["nhs_number"] != ""]
    joined = rt.merge(registers, on=["register", "record_id"])
    return joined.merge(sim.extract, on="nhs_number", suffixes=("_reg", "_nhs"))


def test_ground_truth_is_consistent_with_registers(cardiff: SimulatedLA) -> None:
    joined = _joined(cardiff)
    assert len(joined) == (cardiff.register_truth["nhs_number"] != "").sum()
    clean = joined[joined["noise"] == ""]
    assert len(clean) > 1000
    located = clean[clean["restricted"] != "Y"]  # a restricted child's location never reaches the extract
    for col in ("forename", "surname", "dob", "postcode", "sex"):
        rows = located if col == "postcode" else clean
        assert (rows[f"{col}_reg"] == rows[f"{col}_nhs"]).all(), col
    # Every item the child-level truth lists is a real register record, and vice versa.
    items = cardiff.truth["registers"].str.split(";").explode()
    items = set(items[items != ""])
    rt = cardiff.register_truth[cardiff.register_truth["nhs_number"] != ""]
    assert items == set(rt["register"] + ":" + rt["record_id"])


def test_noise_labels_describe_real_differences(cardiff: SimulatedLA) -> None:
    joined = _joined(cardiff)
    noise = joined["noise"]
    transposed = joined[noise.str.contains("dob_transposed") & ~noise.str.contains("dob_digit_slip")]
    assert len(transposed) > 10
    for reg, nhs in zip(transposed["dob_reg"], transposed["dob_nhs"], strict=True):
        r, h = dt.date.fromisoformat(reg), dt.date.fromisoformat(nhs)
        assert (r.year, r.day, r.month) == (h.year, h.month, h.day)
    moved = joined[joined["noise"].str.contains("moved_house") & ~joined["noise"].str.contains("missing_postcode")]
    assert (moved["postcode_reg"].str.upper() != moved["postcode_nhs"]).mean() > 0.95
    upper = joined[joined["noise"].str.contains("upper_case")]
    assert (upper["surname_reg"] == upper["surname_reg"].str.upper()).all()


def test_households_siblings_and_twins(cardiff: SimulatedLA) -> None:
    twins = cardiff.truth[cardiff.truth["twin"] != ""].merge(cardiff.extract, on="nhs_number")
    assert 0.02 < len(twins) / N < 0.045
    for _, pair in twins.groupby("twin"):
        assert len(pair) == 2
        assert pair["surname"].nunique() == 1 and pair["dob"].nunique() == 1
        assert pair["address_line1"].nunique() == 1 and pair["postcode"].nunique() == 1
        assert pair["forename"].nunique() == 2
    sizes = cardiff.truth.groupby("household_id").size()
    assert sizes.max() >= 3 and (sizes >= 2).mean() > 0.4


def test_welsh_names_and_their_variety(cardiff: SimulatedLA) -> None:
    surnames = cardiff.extract["surname"]
    assert 0.045 < (surnames == "Jones").mean() < 0.065  # 5.4% of Wales in 2020
    assert surnames.str.contains("-").mean() > 0.01
    assert surnames.str.match(r"^a[pb] ").any()
    forenames = cardiff.extract["forename"]
    assert {"Siân", "Llŷr", "Hâf", "Dafydd"} <= set(forenames)
    assert surnames.nunique() > 3000 and forenames.nunique() > 2000
    assert 0.01 < forenames.value_counts(normalize=True).iloc[0] < 0.035  # the top name (2.6%), as in ONS counts


def test_the_1830s_names_make_namesakes_commoner() -> None:
    def namesakes(names: str) -> float:
        sim = simulate_la("W06000015", children=20_000, seed=3, year_start=YEAR,
                          noise=NoiseConfig(families=FamilyConfig(names=names)))
        return float(sim.extract.duplicated(["forename", "surname", "dob", "sex"], keep=False).mean())

    old = simulate_la("W06000015", children=20_000, seed=3, year_start=YEAR,
                      noise=NoiseConfig(families=FamilyConfig(names="1830s")))
    assert 0.12 < (old.extract["surname"] == "Jones").mean() < 0.16  # 14% of Wales in 1813-37
    assert namesakes("1830s") > 10 * namesakes("2020")


def test_an_unknown_name_frequency_is_refused() -> None:
    with pytest.raises(ValueError, match="names must be one of 2020, 1830s"):
        FamilyConfig(names="1900s")


def test_same_seed_same_data_and_other_seed_differs() -> None:
    a = simulate_la("W06000001", children=500, seed=5, year_start=YEAR)
    b = simulate_la("W06000001", children=500, seed=5, year_start=YEAR)
    c = simulate_la("W06000001", children=500, seed=6, year_start=YEAR)
    pd.testing.assert_frame_equal(a.extract, b.extract)
    pd.testing.assert_frame_equal(a.registers["school_census"], b.registers["school_census"])
    assert not a.extract["surname"].equals(c.extract["surname"])


def test_children_split_across_las_in_proportion() -> None:
    split = split_children(["W06000015", "W06000002"], 1000)
    assert sum(split.values()) == 1000 and split["W06000015"] > 3 * split["W06000002"]
    assert split_children(["W06000015"], None) == {"W06000015": 57_000}


def test_hard_families_make_triplets_shared_initials_namesakes_and_stale_registers() -> None:
    # triplets are rare (2% of twin households of three or more): more of them here to check them
    families = replace(FamilyConfig.hard(), triplet_share=0.5)
    sim = simulate_la("W06000015", children=12_000, seed=4, year_start=YEAR,
                      noise=replace(NoiseConfig().scaled(0.0), families=families))
    plain = simulate_la("W06000015", children=12_000, seed=4, year_start=YEAR, noise=NoiseConfig().scaled(0.0))
    truth, extract = sim.truth, sim.extract
    # triplets: three children of one multiple birth, all with different forenames
    sizes = truth.loc[truth["twin"] != "", "twin"].value_counts()
    assert (sizes == 3).any() and (sizes <= 3).all()
    for label in sizes.index[sizes == 3]:
        assert extract.loc[(truth["twin"] == label).to_numpy(), "forename"].is_unique
    # siblings share an initial far more often than by chance
    households = extract.assign(h=truth["household_id"].to_numpy(), i=extract["forename"].str[0])

    def shared(frame: pd.DataFrame) -> float:
        many = frame.groupby("h").filter(lambda g: len(g) > 1)
        return float(many.groupby("h")["i"].nunique().eq(1).mean())
    plain_households = plain.extract.assign(h=plain.truth["household_id"].to_numpy(), i=plain.extract["forename"].str[0])
    assert shared(households) > shared(plain_households) + 0.1
    # namesakes: same forename, surname and postcode, another household and another birthday
    key = extract[["forename", "surname", "postcode"]].agg("|".join, axis=1)
    same = extract.assign(k=key, h=truth["household_id"].to_numpy())[key.duplicated(keep=False).to_numpy()]
    namesakes = same.groupby("k").filter(lambda g: g["h"].nunique() > 1 and g["dob"].nunique() > 1)
    assert len(namesakes) >= 0.005 * len(extract)
    # registers a term old: the census holds the old postcode of children whose family moved
    census = sim.registers["school_census"].merge(
        sim.register_truth[sim.register_truth["register"] == "school_census"][["record_id", "nhs_number"]], on="record_id")
    joined = census.merge(extract[["nhs_number", "postcode", "surname"]], on="nhs_number", suffixes=("_reg", "_gp"))
    moved = (joined["postcode_reg"] != joined["postcode_gp"]).mean()
    renamed = (joined["surname_reg"] != joined["surname_gp"]).mean()
    assert 0.02 < moved < 0.07 and 0.003 < renamed < 0.03
