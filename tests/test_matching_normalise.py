"""Normalisation: names, Welsh forms, surnames, postcodes, addresses, dates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cme_pipeline.matching import names
from cme_pipeline.matching.normalise import (
    address_parts,
    clean_text,
    fold,
    given_key,
    parse_dates,
    postcode_parts,
    sex_codes,
    surname_key,
    surname_parts,
)
from cme_pipeline.matching.prepare import prepare


@pytest.mark.parametrize(("raw", "folded"), [("Siân", "sian"), ("Llŷr", "llyr"), ("Hâf", "haf"),
                                             ("GRUFFÜDD", "gruffudd"), ("Wiśniewski", "wisniewski")])
def test_fold_drops_case_and_diacritics(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_clean_text_punctuation() -> None:
    assert clean_text("O'Brien") == "obrien"
    assert clean_text("  Lloyd-Jones ") == "lloyd jones"
    assert clean_text("St. David's") == "st davids"


@pytest.mark.parametrize("raw", ["Lloyd-Jones", "LLOYD JONES", "lloyd  jones", "Lloyd–Jones".replace("–", "-")])
def test_surname_key_joins_double_barrelled_forms(raw: str) -> None:
    assert surname_key(raw) == "lloydjones"


def test_surname_parts_split_hyphens_and_drop_patronymic_particles() -> None:
    assert surname_parts("Lloyd-Jones") == ("lloyd", "jones")
    assert surname_parts("ap Rhys") == ("rhys",)
    assert surname_parts("Ab Owain") == ("owain",)
    assert surname_parts("") == ()


def test_given_key_takes_first_name_and_keeps_hyphenated_name_whole() -> None:
    assert given_key("Mary-Jane") == "maryjane"
    assert given_key("Siân Haf") == "sian"
    assert given_key("") == ""


@pytest.mark.parametrize(
    ("raw", "parts"),
    [
        ("cf101aa", ("CF10 1AA", "CF10 1", "CF10")),
        ("  Cf10   1AA ", ("CF10 1AA", "CF10 1", "CF10")),
        ("SA1 8PP", ("SA1 8PP", "SA1 8", "SA1")),
        ("W1A 0AX", ("W1A 0AX", "W1A 0", "W1A")),
        ("D02 X285", ("D02X285", "", "")),  # an Eircode: kept, but no sector or district
        ("", ("", "", "")),
    ],
)
def test_postcode_parts(raw: str, parts: tuple[str, str, str]) -> None:
    assert postcode_parts(raw) == parts


def test_address_tokens_agree_across_abbreviations() -> None:
    assert address_parts("12 St David's Road, Cardiff") == address_parts("12 Saint Davids Rd, Caerdydd, Cardiff")
    assert address_parts("208 Hill Street, Cardiff, Cardiff") == ("208", "208 hill st")
    assert address_parts("Flat 3, 12a High Street")[0] == "3"
    assert address_parts("12A High St")[0] == "12a"
    assert address_parts("Ty Gwyn, Heol Fawr")[0] == ""


def test_unparseable_dates_are_missing() -> None:
    parsed = parse_dates(np.array(["2015-03-04", "2019-02-30", "", "04/03/2015", "2015-3-4x"], dtype=object))
    assert parsed[0].tolist() == [2015, 3, 4]
    assert (parsed[1:] == -1).all()


def test_sex_codes() -> None:
    assert sex_codes(np.array(["M", "f", "Female", "U", "", "x"], dtype=object)).tolist() == [1, 2, 2, 0, 0, 0]


@pytest.mark.parametrize(
    ("a", "b"),
    [("dafydd", "david"), ("dai", "dave"), ("dafydd", "dave"), ("sian", "jane"), ("gwilym", "william"),
     ("bill", "william"), ("catrin", "kate"), ("tomos", "tom"), ("twm", "thomas"), ("huw", "hugh"),
     ("elizabeth", "beth"), ("alexander", "alex")],
)
def test_given_name_variants(a: str, b: str) -> None:
    assert names.are_variants(a, b)
    assert names.are_variants(b, a)


@pytest.mark.parametrize(("a", "b"), [("john", "mary"), ("david", "william"), ("", "david"), ("sian", "")])
def test_not_variants(a: str, b: str) -> None:
    assert not names.are_variants(a, b)


def test_prepare_tolerates_missing_columns_and_junk_values() -> None:
    frame = pd.DataFrame({"record_id": ["a", "b", "c"], "forename": ["Siân", None, 42],
                          "dob": ["2015-13-01", float("nan"), "2014-02-03"]})
    prepared = prepare(frame)
    assert prepared.forename.tolist() == ["sian", "", ""]
    assert prepared.surname.tolist() == ["", "", ""]
    assert prepared.dob[:, 0].tolist() == [-1, -1, 2014]
    assert prepared.unparseable == 1  # the impossible month; NaN is simply missing
    assert prepared.postcode.tolist() == ["", "", ""]
