"""Byte scans for personal data left behind: every file under the given roots, read raw.

A scan is only evidence when it had something to look for and could have found it, so a
``Probe`` refuses to be empty and the tests plant a value once to show the scan sees it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

_NHS = re.compile(rb"(?<![0-9])(999)[ -]?([0-9]{3})[ -]?([0-9]{4})(?![0-9])")
_DATE = re.compile(rb"(?<![0-9])([0-9]{4}-[0-9]{2}-[0-9]{2})(?![0-9])")
_HEX = frozenset(b"0123456789abcdefABCDEF")
DIGEST_HEX_CHARS = 32  # the shortest digest we write (SHA-256/HMAC hex is 64)
Person = tuple[bytes, bytes, tuple[bytes, ...]]  # dob, lower-case surname, postcode forms
WINDOW = 256  # bytes either side of a date in which a surname and postcode count as "next to" it


@dataclass
class Probe:
    """What to look for: NHS numbers, and a child's surname + postcode next to their date of birth."""

    nhs_numbers: set[bytes] = field(default_factory=set)
    # dob -> (surname, postcode forms) of each child to look for
    people_by_dob: dict[bytes, list[tuple[bytes, tuple[bytes, ...]]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.nhs_numbers:
            raise ValueError("a scan over an empty sample proves nothing")

    @classmethod
    def from_extract(cls, extract: pd.DataFrame, people: pd.DataFrame | None = None) -> Probe:
        """Probe for every NHS number of ``extract``, and surname + dob + postcode of ``people``.

        Args:
            extract: health extract rows (``nhs_number`` column).
            people: rows with ``surname``, ``dob`` and ``postcode`` (e.g. the children on no
                register); a child counts as found when all three lie within ``WINDOW`` bytes.
        """
        probe = cls({str(n).encode() for n in extract["nhs_number"] if str(n)})
        if people is not None:
            for surname, dob, postcode in zip(people["surname"], people["dob"], people["postcode"], strict=True):
                if surname and dob and postcode:
                    code = str(postcode).lower().encode()
                    forms = (code, code.replace(b" ", b""))
                    probe.people_by_dob.setdefault(str(dob).encode(), []).append(
                        (str(surname).lower().encode(), forms)
                    )
        return probe

    @property
    def people(self) -> int:
        """How many children the name + dob + postcode probe looks for."""
        return sum(len(v) for v in self.people_by_dob.values())

    def hits(self, data: bytes) -> list[str]:
        """Kinds of hit in ``data`` (no values: the test output must not leak either)."""
        found = []
        for m in _NHS.finditer(data):
            if b"".join(m.groups()) in self.nhs_numbers and not _inside_digest(data, m.start(), m.end()):
                found.append("nhs_number")
                break
        if next(self._people_in(data), None) is not None:
            found.append("name+dob+postcode")
        return found

    def people_found(self, data: bytes) -> set[Person]:
        """Every probed child whose surname, date of birth and postcode ``data`` holds together."""
        return set(self._people_in(data))

    def _people_in(self, data: bytes) -> Iterator[Person]:
        if not self.people_by_dob:
            return
        lowered = data.lower()
        for m in _DATE.finditer(data):
            people = self.people_by_dob.get(m.group(1))
            if people:
                window = lowered[max(0, m.start() - WINDOW) : m.end() + WINDOW]
                for name, forms in people:
                    if name in window and any(f in window for f in forms):
                        yield m.group(1), name, forms

    def without_people_already_held(self, roots: Iterable[Path]) -> Probe:
        """This probe without the children the LA side's files already show side by side.

        Run it on the LA side before the delivery is opened: the registers are the LA's own
        plaintext, and among hundreds of thousands of register rows a child's surname, date of
        birth and postcode can fall within a few hundred bytes of each other by chance (a
        registered twin or sibling, a namesake next door). Such a child proves nothing; every
        other child found afterwards can only have come from the delivery.
        """
        held: set[Person] = set()
        for path in _files(roots):
            held |= self.people_found(path.read_bytes())
        kept: dict[bytes, list[tuple[bytes, tuple[bytes, ...]]]] = {}
        for dob, people in self.people_by_dob.items():
            rest = [(name, forms) for name, forms in people if (dob, name, forms) not in held]
            if rest:
                kept[dob] = rest
        return Probe(set(self.nhs_numbers), kept)


def _inside_digest(data: bytes, start: int, end: int) -> bool:
    """Whether ``data[start:end]`` lies inside a long run of hex digits (an HMAC tag or a hash).

    Ten decimal digits occur by chance in hex digests: with 440,000 keyed NHS-number tags of 64
    hex characters and 440,000 NHS numbers to look for, about ten tags contain one of the numbers
    somewhere (seen at all-Wales scale). Such a run is a digest, not a stored number.
    """
    left, right = start, end
    while left > 0 and data[left - 1] in _HEX:
        left -= 1
    while right < len(data) and data[right] in _HEX:
        right += 1
    return right - left >= DIGEST_HEX_CHARS


def _files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from sorted(p for p in root.rglob("*") if p.is_file())


def scan(roots: Iterable[Path], probe: Probe) -> dict[str, list[str]]:
    """Every file under ``roots`` with a hit, and the kinds of hit (paths relative to their root)."""
    result: dict[str, list[str]] = {}
    files = 0
    for path in _files(roots):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        files += 1
        kinds = probe.hits(data)
        if kinds:
            result[str(path)] = kinds
    if files == 0:
        raise AssertionError("the scan found no files to read")
    return result
