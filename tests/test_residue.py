"""The residue scanner itself: it must find what is there and not what only looks like it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from residue import Probe, scan

NUMBER = "9991234567"


def test_a_number_is_found_in_text_and_binary_context() -> None:
    probe = Probe({NUMBER.encode()})
    for data in (b"nhs,9991234567,", b"\x15W06000015;999 123 4567\x00", b"deadbeef9991234567", b"x9991234567y"):
        assert probe.hits(data) == ["nhs_number"], data


def test_ten_digits_inside_a_digest_are_not_a_number() -> None:
    # A 64-character HMAC tag that happens to contain the number (seen at all-Wales scale).
    tag = b"1abe66e" + NUMBER.encode() + b"ff0066b5a453fae437bce3e611b43f1e1539d1df89c1cd0"
    assert len(tag) == 64
    assert Probe({NUMBER.encode()}).hits(b"\x84" + tag + b"\x00") == []


def test_a_child_is_found_only_with_name_dob_and_postcode_together() -> None:
    people = pd.DataFrame({"surname": ["Przybylski"], "dob": ["2015-03-04"], "postcode": ["CF10 1AA"]})
    probe = Probe.from_extract(pd.DataFrame({"nhs_number": [NUMBER]}), people)
    assert probe.people == 1
    assert probe.hits(b"PRZYBYLSKI|2015-03-04|cf101aa") == ["name+dob+postcode"]
    assert probe.hits(b"Przybylski 2015-03-04") == []
    assert probe.hits(b"Przybylski " + b"x" * 300 + b" 2015-03-04 CF10 1AA") == []


def test_an_empty_sample_or_an_empty_tree_proves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Probe(set())
    with pytest.raises(AssertionError):
        scan([tmp_path], Probe({NUMBER.encode()}))


def test_children_the_registers_already_show_are_left_out_of_the_sample(tmp_path: Path) -> None:
    people = pd.DataFrame({"surname": ["Jones", "Przybylski"], "dob": ["2015-03-04", "2016-07-08"],
                           "postcode": ["CF10 1AA", "CF5 2BB"]})
    probe = Probe.from_extract(pd.DataFrame({"nhs_number": [NUMBER]}), people)
    store = tmp_path / "store"
    store.mkdir()
    # A register row of a registered twin: the LA's own data, already side by side.
    (store / "registers.db").write_bytes(b"\x00AledJones2015-03-04M1 Heol Fawr, CaerdyddCF10 1AA\x00")
    sample = probe.without_people_already_held([store])
    assert (probe.people, sample.people) == (2, 1)
    assert sample.hits(b"Jones,2015-03-04,CF10 1AA") == []
    assert sample.hits(b"Przybylski,2016-07-08,CF5 2BB") == ["name+dob+postcode"]
    assert sample.nhs_numbers == probe.nhs_numbers
