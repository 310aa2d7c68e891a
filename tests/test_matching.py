"""The matching engine's behaviour: variants, dates, surnames, twins, term frequency, bands,
one-to-one, and tolerance of bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures_matching import with_background

from cme_pipeline.matching import (
    LinkConfig,
    explain,
    fit_model,
    health_to_canonical,
    link,
    match_registers,
    register_to_canonical,
)
from cme_pipeline.schemas import (
    CANONICAL_PERSON,
    HEALTH_EXTRACT,
    LINK_PAIRS,
    MATCH_OUTCOME,
    register_columns,
)


def person(record_id: str, forename: str, surname: str, dob: str, **rest: str) -> dict[str, str]:
    base = {"record_id": record_id, "forename": forename, "middle_names": "", "surname": surname, "dob": dob,
            "sex": "M", "address": "14 Heol y Parc, Cardiff", "postcode": "CF14 3NX"}
    base.update(rest)
    return base


def frame(*people: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(list(people))[list(CANONICAL_PERSON)]


def pair_band(pairs: pd.DataFrame, left_id: str, right_id: str) -> str | None:
    row = pairs[(pairs["left_id"] == left_id) & (pairs["right_id"] == right_id)]
    return None if row.empty else str(row["band"].iloc[0])


def linked(left: pd.DataFrame, right: pd.DataFrame, config: LinkConfig | None = None) -> pd.DataFrame:
    big_left, big_right = with_background(left, right)
    return link(big_left, big_right, config)


def test_output_columns_and_background_matches() -> None:
    pairs = linked(frame(person("h1", "Gethin", "Przybylski", "2014-05-20")),
                   frame(person("g1", "Gethin", "Przybylski", "2014-05-20")))
    assert tuple(pairs.columns) == LINK_PAIRS
    assert pair_band(pairs, "h1", "g1") == "match"
    matches = pairs[pairs["band"] == "match"]
    # every background child finds their own copy and nothing else
    bg = matches[matches["left_id"].str.startswith("bg")]
    assert (bg["right_id"] == "R" + bg["left_id"]).all()
    assert len(bg) == 400
    assert pairs["probability"].between(0, 1).all()


@pytest.mark.parametrize(("gp", "register"), [("Dafydd", "Dai"), ("Siân", "Jane"), ("William", "Bill"),
                                              ("Gwilym", "William"), ("Catrin", "Kate")])
def test_nickname_and_welsh_variant_pairs_match(gp: str, register: str) -> None:
    pairs = linked(frame(person("h1", gp, "Penrhyn-Vaughan", "2013-11-02")),
                   frame(person("g1", register, "Penrhyn-Vaughan", "2013-11-02")))
    assert pair_band(pairs, "h1", "g1") == "match"


def test_forename_middle_name_swap_matches() -> None:
    pairs = linked(frame(person("h1", "Alaw", "Tremarchog", "2016-01-09", middle_names="Elis")),
                   frame(person("g1", "Elis", "Tremarchog", "2016-01-09", middle_names="Alaw")))
    assert pair_band(pairs, "h1", "g1") == "match"


@pytest.mark.parametrize("register_dob", ["2015-04-03", "2015-03-05", "2015-03-14"])
def test_transposed_or_slipped_date_still_matches(register_dob: str) -> None:
    pairs = linked(frame(person("h1", "Ioan", "Przybylski", "2015-03-04")),
                   frame(person("g1", "Ioan", "Przybylski", register_dob)))
    assert pair_band(pairs, "h1", "g1") == "match"


@pytest.mark.parametrize("register_surname", ["Jones", "Lloyd", "LLOYD JONES"])
def test_hyphenated_surname_matches_either_part(register_surname: str) -> None:
    pairs = linked(frame(person("h1", "Gruffydd", "Lloyd-Jones", "2012-07-30")),
                   frame(person("g1", "Gruffydd", register_surname, "2012-07-30")))
    assert pair_band(pairs, "h1", "g1") == "match"


def test_patronymic_and_diacritics_match() -> None:
    pairs = linked(frame(person("h1", "Llŷr", "ap Rhys", "2011-10-10")),
                   frame(person("g1", "LLYR", "Rhys", "2011-10-10", postcode="cf143nx")))
    assert pair_band(pairs, "h1", "g1") == "match"


def test_different_child_same_name_is_not_matched() -> None:
    pairs = linked(frame(person("h1", "Osian", "Przybylski", "2014-05-20")),
                   frame(person("g1", "Osian", "Przybylski", "2011-09-02", address="3 Mill Lane, Newport",
                                postcode="NP20 1AB")))
    assert pair_band(pairs, "h1", "g1") is None


TWIN_A = person("h1", "Elis", "Tremarchog", "2016-06-01", middle_names="Rhys")
TWIN_B = person("h2", "Osian", "Tremarchog", "2016-06-01", middle_names="Rhys")


def test_twins_each_take_their_own_record() -> None:
    pairs = linked(frame(TWIN_A, TWIN_B),
                   frame({**TWIN_A, "record_id": "g1"}, {**TWIN_B, "record_id": "g2"}))
    assert pair_band(pairs, "h1", "g1") == "match"
    assert pair_band(pairs, "h2", "g2") == "match"
    assert pair_band(pairs, "h1", "g2") != "match"
    assert pair_band(pairs, "h2", "g1") != "match"


def test_twin_absent_from_register_does_not_take_the_other_twins_record() -> None:
    health, register = with_background(frame(TWIN_A, TWIN_B), frame({**TWIN_B, "record_id": "g2"}))
    outcome = match_registers(health, {"school_census": register}).set_index("health_record_id")
    assert outcome.loc["h2", "outcome"] == "matched"
    assert outcome.loc["h1", "outcome"] != "matched"


def test_term_frequency_common_surname_counts_for_less() -> None:
    left = frame(person("h1", "Gethin", "Jones", "2014-05-20"), person("h2", "Gethin", "Przybylski", "2014-05-21"))
    right = frame(person("g1", "Gethin", "Jones", "2014-05-20"), person("g2", "Gethin", "Przybylski", "2014-05-21"))
    big_left, big_right = with_background(left, right)
    model = fit_model(big_left, big_right)
    jones = explain(big_left, big_right, "h1", "g1", model=model).set_index("comparison")
    rare = explain(big_left, big_right, "h2", "g2", model=model).set_index("comparison")
    assert jones.loc["surname", "level"] == rare.loc["surname", "level"] == "exact"
    assert jones.loc["surname", "weight"] < rare.loc["surname", "weight"] - 2  # bits
    # without the adjustment the two agreements weigh the same
    flat = LinkConfig(term_frequency=False)
    jones_flat = explain(big_left, big_right, "h1", "g1", flat, model).set_index("comparison")
    rare_flat = explain(big_left, big_right, "h2", "g2", flat, model).set_index("comparison")
    assert jones_flat.loc["surname", "weight"] == pytest.approx(rare_flat.loc["surname", "weight"])


def test_explain_gives_weights_and_no_personal_values() -> None:
    left, right = with_background(frame(person("h1", "Dafydd", "Przybylski", "2015-03-04")),
                                  frame(person("g1", "Dai", "Przybylski", "2015-04-03")))
    table = explain(left, right, "h1", "g1")
    assert list(table["comparison"]) == ["prior", "forename", "surname", "dob", "sex", "middle", "location", "total"]
    levels = table.set_index("comparison")["level"]
    assert levels["forename"] == "variant" and levels["dob"] == "day/month transposed"
    assert levels["middle"] == "missing"
    assert table["weight"].iloc[-1] == pytest.approx(table["weight"].iloc[:-1].sum())
    text = table.to_csv()
    for value in ("Dafydd", "dafydd", "Dai", "Przybylski", "przybylski", "2015", "CF14", "Heol"):
        assert value not in text
    with pytest.raises(KeyError):
        explain(left, right, "nope", "g1")


def test_threshold_bands_follow_config() -> None:
    # a weaker pair: surname typo and a moved house
    left = frame(person("h1", "Cerys", "Przybylski", "2013-02-17"))
    right = frame(person("g1", "Cerys", "Przybilski", "2013-02-17", address="9 Mill Lane, Cardiff", postcode="CF5 2QT"))
    default = linked(left, right)
    p = float(default.loc[(default["left_id"] == "h1") & (default["right_id"] == "g1"), "probability"].iloc[0])
    assert 0.5 <= p < 1.0
    below = linked(left, right, LinkConfig(match_threshold=min(1.0, p + 1e-9), possible_threshold=0.1))
    assert pair_band(below, "h1", "g1") == "possible"
    above = linked(left, right, LinkConfig(match_threshold=p, possible_threshold=p))
    assert pair_band(above, "h1", "g1") == "match"
    dropped = linked(left, right, LinkConfig(match_threshold=1.0, possible_threshold=min(1.0, p + 1e-9)))
    assert pair_band(dropped, "h1", "g1") is None
    with pytest.raises(ValueError):
        LinkConfig(match_threshold=0.4, possible_threshold=0.5)


def test_one_to_one_each_record_in_at_most_one_match() -> None:
    child = person("h1", "Gethin", "Przybylski", "2014-05-20", middle_names="Aled")
    # the register holds the child twice: once current, once from before a house move
    stale = {**child, "record_id": "g2", "address": "9 Mill Lane, Bridgend", "postcode": "CF31 1AA"}
    pairs = linked(frame(child), frame({**child, "record_id": "g1"}, stale))
    matches = pairs[pairs["band"] == "match"]
    assert not matches["left_id"].duplicated().any()
    assert not matches["right_id"].duplicated().any()
    assert pair_band(pairs, "h1", "g1") == "match"
    assert pair_band(pairs, "h1", "g2") == "possible"  # shown for review, never a second match


def test_identical_rivals_are_for_review_not_row_order() -> None:
    child = person("h1", "Gethin", "Przybylski", "2014-05-20")
    pairs = linked(frame(child), frame({**child, "record_id": "g1"}, {**child, "record_id": "g2"}))
    assert pair_band(pairs, "h1", "g1") == pair_band(pairs, "h1", "g2") == "possible"
    # the same child twice on the health side, once on the register
    pairs = linked(frame(child, {**child, "record_id": "h2"}), frame({**child, "record_id": "g1"}))
    assert pair_band(pairs, "h1", "g1") == pair_band(pairs, "h2", "g1") == "possible"
    loose = linked(frame(child), frame({**child, "record_id": "g1"}, {**child, "record_id": "g2"}),
                   LinkConfig(ambiguity_bits=-1.0))
    assert (loose["band"] == "match").sum() >= 1 and pair_band(loose, "h1", "g1") == "match"


def test_missing_columns_and_unparseable_values_are_missing_not_errors() -> None:
    left = frame(person("h1", "Gethin", "Przybylski", "2014-05-20"))
    right = pd.DataFrame({"record_id": ["g1", "g2"], "forename": ["Gethin", None], "surname": ["Przybylski", 7],
                          "dob": ["2014-05-20", "20/05/2014"], "postcode": ["CF14 3NX", "not a postcode!"]})
    pairs = link(left, right)
    assert pair_band(pairs, "h1", "g1") in ("match", "possible")
    assert link(left, right.iloc[0:0]).empty
    assert link(left.drop(columns=["dob", "sex", "address"]), right.drop(columns=["dob"])).columns.tolist() == list(LINK_PAIRS)


def test_match_registers_outcomes() -> None:
    health, census = with_background(
        frame(person("h1", "Gethin", "Przybylski", "2014-05-20"), person("h2", "Alaw", "Wyncliffe", "2012-01-15"),
              person("h3", "Nanw", "Caerleonard", "2011-08-08")),
        frame(person("c1", "Gethin", "Przybylski", "2014-05-20")),
    )
    ehe = frame(person("e1", "Alaw", "Wyncliffe", "2012-01-15"))
    out = match_registers(health, {"school_census": census, "ehe": ehe, "cme": ehe.iloc[0:0]})
    assert tuple(out.columns) == MATCH_OUTCOME
    assert out["health_record_id"].tolist() == health["record_id"].tolist()
    got = out.set_index("health_record_id")
    assert tuple(got.loc["h1", ["outcome", "register", "register_record_id"]]) == ("matched", "school_census", "c1")
    assert tuple(got.loc["h2", ["outcome", "register", "register_record_id"]]) == ("matched", "ehe", "e1")
    assert tuple(got.loc["h3", ["outcome", "register", "register_record_id"]]) == ("unmatched", "", "")
    assert got.loc["h3", "probability"] == 0.0
    assert (got.loc[got.index.str.startswith("bg"), "outcome"] == "matched").all()


def test_converters() -> None:
    extract = pd.DataFrame([{c: "" for c in HEALTH_EXTRACT}] * 2)
    extract["nhs_number"] = ["9990000018", "9990000026"]
    extract["forename"] = ["Siân", "Huw"]
    extract["former_surname"] = ["Jones", ""]
    extract["address_line1"] = ["1 High St", "2 Low St"]
    extract["address_line3"] = ["Cardiff", ""]
    canonical = health_to_canonical(extract)
    assert canonical["record_id"].tolist() == ["r000001", "r000002"]
    assert canonical["address"].tolist() == ["1 High St, Cardiff", "2 Low St"]
    assert "nhs_number" not in canonical.columns
    assert not canonical.astype(str).isin(["9990000018", "9990000026"]).any().any()
    register = pd.DataFrame([{c: "x" for c in register_columns("school_census")}])
    assert tuple(register_to_canonical(register).columns) == CANONICAL_PERSON


def test_former_surname_links_to_register_holding_old_name() -> None:
    left = frame(person("h1", "Gethin", "Wyncliffe", "2014-05-20")).assign(former_surname="Przybylski")
    big_left, big_right = with_background(left, frame(person("g1", "Gethin", "Przybylski", "2014-05-20")))
    big_left["former_surname"] = big_left["former_surname"].fillna("")
    table = explain(big_left, big_right, "h1", "g1").set_index("comparison")
    assert table.loc["surname", "level"] == "shares a part or former"


def test_simulated_la_accuracy_and_twins() -> None:
    from cme_pipeline.simulate import simulate_la

    sim = simulate_la("W06000002", children=4000, seed=3)
    health = health_to_canonical(sim.extract)
    registers = {k: register_to_canonical(v) for k, v in sim.registers.items()}
    out = match_registers(health, registers)
    nhs = dict(zip(health["record_id"], sim.extract["nhs_number"], strict=True))
    truth = sim.register_truth
    owner = dict(zip(zip(truth["register"], truth["record_id"], strict=True), truth["nhs_number"], strict=True))
    matched = out[out["outcome"] == "matched"]
    correct = np.array([owner[(r, i)] == nhs[h] for h, r, i in
                        zip(matched["health_record_id"], matched["register"], matched["register_record_id"], strict=True)])
    on_register = set(truth.loc[truth["nhs_number"] != "", "nhs_number"])
    should = sum(nhs[h] in on_register for h in health["record_id"])
    precision, recall = correct.mean(), correct.sum() / should
    assert precision >= 0.995 and recall >= 0.97
    # no twin is matched to their twin's register record
    twins = sim.truth.set_index("nhs_number")["twin"]
    wrong = matched[~correct]
    assert not any(twins.get(nhs[h], "") != "" and twins.get(owner[(r, i)], "") == twins.get(nhs[h], "")
                   for h, r, i in zip(wrong["health_record_id"], wrong["register"], wrong["register_record_id"], strict=True))


def test_twin_guard_holds_when_the_register_cannot_tell_the_twins_apart() -> None:
    # B's register record carries a pet name our tables do not know and no middle name: A's
    # cross pair scores exactly as B's own, and one-to-one alone would give B's record to A
    # (the first in row order), matching (and deleting) a child who is on no register.
    b_register = {**TWIN_B, "record_id": "g2", "forename": "Ozzy", "middle_names": ""}
    health, register = with_background(frame(TWIN_A, TWIN_B), frame(b_register))
    pairs = link(health, register)
    assert pair_band(pairs, "h1", "g2") == "possible"
    assert pair_band(pairs, "h2", "g2") == "possible"
    outcome = match_registers(health, {"school_census": register}).set_index("health_record_id")
    assert outcome.loc["h1", "outcome"] == outcome.loc["h2", "outcome"] == "possible"


def test_full_swap_is_one_strong_agreement_not_two_disagreements() -> None:
    b_register = {**TWIN_B, "record_id": "g2", "forename": TWIN_B["middle_names"], "middle_names": TWIN_B["forename"]}
    health, register = with_background(frame(TWIN_A, TWIN_B), frame(b_register))
    assert pair_band(link(health, register), "h2", "g2") == "match"
    table = explain(health, register, "h2", "g2").set_index("comparison")
    assert table.loc["forename", "level"] == "swapped with middle"
    assert table.loc["forename", "weight"] > 3
    assert table.loc["middle", "level"] == "missing"  # not counted twice


def test_record_without_dob_or_postcode_is_still_compared() -> None:
    left = frame(person("h1", "Dafydd", "Przybylski", "2014-13-01", postcode="", address=""))
    right = frame(person("g1", "Dave", "Przybylski", "2014-01-13"))
    pairs = linked(left, right)
    assert pair_band(pairs, "h1", "g1") is not None  # compared and at least possible


def test_same_house_number_on_another_street_is_not_an_address_agreement() -> None:
    left = frame(person("h1", "Iwan", "Przybylski", "2021-06-26", address="206 Castle Street, Blackwood, Caerphilly",
                        postcode="NP12 4DD"))
    right = frame(person("g1", "Iwan", "Przybylski", "2021-06-26", address="206 Hill Street, Caerphilly",
                         postcode="CF82 3HB"),
                  person("g2", "Iwan", "Przybylski", "2021-06-26", address="206 Castle St, Blackwood",
                         postcode=""))
    big_left, big_right = with_background(left, right)
    model = fit_model(big_left, big_right)
    assert explain(big_left, big_right, "h1", "g1", model=model).set_index("comparison").loc["location", "level"] == "other"
    assert explain(big_left, big_right, "h1", "g2", model=model).set_index("comparison").loc["location", "level"] == "address"
