"""NHS number validation, formatting and synthetic generation (999 test range only)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)  # 10..2 for the first nine digits
TEST_RANGE_PREFIX = "999"


def check_digit(first_nine: str) -> int | None:
    """Return the modulus-11 check digit for nine digits, or None if no valid one exists.

    Args:
        first_nine: the first nine digits of an NHS number.
    """
    if len(first_nine) != 9 or not first_nine.isdigit():
        raise ValueError("expected nine digits")
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    digit = 11 - total % 11
    if digit == 11:
        return 0
    if digit == 10:
        return None  # numbers whose check digit would be 10 are never issued
    return digit


def is_valid(value: str) -> bool:
    """True when ``value`` (spaces allowed in 3-3-4 form) is a valid NHS number.

    Args:
        value: the candidate NHS number.
    """
    digits = normalise(value)
    if digits is None:
        return False
    return check_digit(digits[:9]) == int(digits[9])


def normalise(value: str) -> str | None:
    """Strip the 3-3-4 spaces; return ten digits or None when it is not ten digits."""
    digits = value.replace(" ", "").strip()
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        return None
    return digits


def format_334(value: str) -> str:
    """Format ten digits as ``999 123 4567``.

    Args:
        value: ten digits, with or without spaces.
    """
    digits = normalise(value)
    if digits is None:
        raise ValueError("not a ten-digit NHS number")
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}"


def valid_mask(values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Vectorised validity check over many NHS numbers (strings)."""
    arr = np.asarray(values, dtype=object)
    out = np.zeros(arr.shape[0], dtype=bool)
    for i, v in enumerate(arr):
        out[i] = isinstance(v, str) and is_valid(v)
    return out


def generate_test_numbers(n: int, rng: np.random.Generator) -> list[str]:
    """Generate ``n`` distinct valid NHS numbers in the 999 test range.

    Args:
        n: how many numbers.
        rng: the random generator (the simulator's seed makes this deterministic).
    """
    # 999 + six random digits leaves 10**6 bodies, about 10/11 with a valid check digit.
    capacity = 10**6
    if n > capacity * 9 // 10:
        raise ValueError("the 999 test range cannot hold that many distinct numbers")
    bodies = rng.choice(capacity, size=min(capacity, int(n * 1.15) + 64), replace=False)
    digits = np.zeros((bodies.size, 9), dtype=np.int64)
    digits[:, :3] = 9
    rest = bodies.copy()
    for col in range(8, 2, -1):
        digits[:, col] = rest % 10
        rest //= 10
    total = digits @ _WEIGHTS
    check = 11 - total % 11
    check[check == 11] = 0
    keep = check != 10
    if keep.sum() < n:
        raise RuntimeError("drew too few valid NHS numbers; the draw margin is too small")
    digits = digits[keep][:n]
    check = check[keep][:n]
    return ["".join(map(str, row)) + str(c) for row, c in zip(digits.tolist(), check.tolist(), strict=True)]
