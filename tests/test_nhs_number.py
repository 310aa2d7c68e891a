from __future__ import annotations

import numpy as np
import pytest

from cme_pipeline import nhs_number


@pytest.mark.parametrize("value", ["9434765919", "943 476 5919", "4010232137"])
def test_known_valid_numbers(value: str) -> None:
    assert nhs_number.is_valid(value)


@pytest.mark.parametrize("value", ["9434765918", "943476591", "94347659190", "94347A5919", "", "١٢٣٤٥٦٧٨٩٠"])
def test_invalid_numbers(value: str) -> None:
    assert not nhs_number.is_valid(value)


def test_check_digit_ten_is_never_valid() -> None:
    # 000000006 has weighted sum 12 -> 11 - 1 = 10: no valid number can start with it.
    assert nhs_number.check_digit("000000006") is None
    assert not any(nhs_number.is_valid("000000006" + str(d)) for d in range(10))


def test_format_334() -> None:
    assert nhs_number.format_334("9434765919") == "943 476 5919"
    with pytest.raises(ValueError):
        nhs_number.format_334("123")


def test_generated_numbers_are_valid_distinct_and_in_test_range() -> None:
    numbers = nhs_number.generate_test_numbers(50_000, np.random.default_rng(7))
    assert len(numbers) == len(set(numbers)) == 50_000
    assert all(n.startswith("999") for n in numbers)
    assert nhs_number.valid_mask(numbers).all()


def test_generation_is_deterministic_by_seed() -> None:
    a = nhs_number.generate_test_numbers(100, np.random.default_rng(1))
    b = nhs_number.generate_test_numbers(100, np.random.default_rng(1))
    c = nhs_number.generate_test_numbers(100, np.random.default_rng(2))
    assert a == b != c
