"""Helpers for the hostile-input tests: mutations of a good CSV and a check that messages leak nothing.

A rejection message may name checks, columns, rows and counts; it must never quote a value of
the input. ``leaked`` finds the input's tokens (words of four letters or more, runs of six
digits or more, ISO dates) and whole cell values that appear in a message, except the words our
own message templates are made of.
"""

from __future__ import annotations

import re

from hypothesis import strategies as st

from cme_pipeline.schemas import CANONICAL_PERSON, HEALTH_EXTRACT

# Words the project's own rejection messages are built from (extract_csv, intake, boundary,
# quality, cme link). An input token that is one of these (or part of one) is not a leak.
MESSAGE_WORDS = frozenset(
    """
    suite delivery failed parse utf8 valid byte line header extract empty column columns
    malformed near rows fields does have longer than characters unexpected missing repeated
    position positions names shown first may not order exactly health record records more
    rejected quarantined checks could complete format unreadable incomplete manifest signature
    verify partner signing ciphertext matches match sha256 signed decrypt decrypts receiving
    addressed schema version date name file left right readable found repeats empty record_id
    cannot write with this least contains contain value values present code codes internal
    """.split()
) | {w for c in (*HEALTH_EXTRACT, *CANONICAL_PERSON) for w in (c, *c.split("_"))}

_TOKEN = re.compile(r"[^\W\d_]{4,}|\d{6,}|\d{4}-\d{2}-\d{2}")


def leaked(message: str, source: str, cells: tuple[str, ...] = ()) -> list[str]:
    """Tokens of ``source`` (and whole ``cells``) that appear in ``message`` and are not ours.

    Words of the first line may be named as column names (a clinical column added to a real
    header must be named to be found), unless they are among ``cells``, the known values: a data
    row read as a header is still personal data.

    Args:
        message: the error message (or details as JSON) to check.
        source: the input as text (bytes decoded with replacement).
        cells: whole values known to be in the input (e.g. a good file's cells).
    """
    lowered = message.lower()
    values = {c for c in cells if len(c) >= 4}
    value_tokens = {t for c in values for t in _TOKEN.findall(c)}
    header = set(_TOKEN.findall(source.splitlines()[0] if source.splitlines() else "")) - value_tokens
    tokens = (set(_TOKEN.findall(source)) - header) | values
    return sorted(
        t for t in tokens
        if t.lower() in lowered and not any(t.lower() in w for w in MESSAGE_WORDS)
    )


def one_line(message: str) -> bool:
    """A non-empty message without line breaks of any kind."""
    return bool(message) and len(message.splitlines()) == 1 and "\r" not in message and "\n" not in message


# -- mutations of a good CSV ---------------------------------------------------------------------

_ANY = st.integers(0, 2**20)
BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf\xef\xbb\xbf")


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


@st.composite
def mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """One hostile edit of ``data``: truncation, byte flips, NULs, BOMs, CRLF, quotes, huge
    fields, other encodings, extra/missing/duplicate columns, lost or repeated lines."""
    # Positions are drawn independently of ``data`` and reduced modulo its size, so the draws do
    # not depend on the bytes (a sealed delivery differs on every run).
    kind = draw(st.sampled_from(MUTATIONS))
    n = max(len(data), 1)
    at = draw(_ANY) % n
    lines = _lines(data)
    row = draw(_ANY) % len(lines)
    k, j = draw(_ANY), draw(_ANY)
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        bits = draw(st.integers(1, 255))
        return data[:at] + bytes([data[at] ^ bits]) + data[at + 1 :] if data else data
    if kind == "insert":
        blob = draw(st.sampled_from([b"\x00", b'"', b'""', b",", b"\n", b"\r", b"\r\n", b"\\", b"\xff", b"\xc3", b"=cmd|' /C calc'!A0"]))
        return data[:at] + blob + data[at:]
    if kind == "bom":
        return draw(st.sampled_from(BOMS)) + data
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    if kind == "cr_only":
        return data.replace(b"\n", b"\r")
    if kind == "encoding":
        codec = draw(st.sampled_from(["latin-1", "utf-16", "utf-16-be", "cp1252", "utf-32"]))
        return data.decode("utf-8", errors="replace").encode(codec, errors="replace")
    if kind == "huge_field":
        size = draw(st.sampled_from([256, 300, 70_000, 200_000]))
        cells = lines[row].split(b",")
        cells[k % len(cells)] = b"X" * size
        lines[row] = b",".join(cells)
        return b"\n".join(lines)
    if kind == "extra_column":
        name = draw(st.sampled_from([b"diagnosis", b"nhs_number", b"", b"Notes 2", b"\xc3\xa9t\xc3\xa9"]))
        return b"\n".join([lines[0] + b"," + name, *(ln + b",x" if ln else ln for ln in lines[1:])])
    if kind == "drop_column":
        return b"\n".join(b",".join(c for i, c in enumerate(ln.split(b",")) if i != k % 20) if ln else ln for ln in lines)
    if kind == "duplicate_header":
        cells = lines[0].split(b",")
        cells[k % len(cells)] = cells[j % len(cells)]
        lines[0] = b",".join(cells)
        return b"\n".join(lines)
    if kind == "drop_line":
        del lines[row]
        return b"\n".join(lines)
    if kind == "repeat_line":
        lines.insert(row, lines[row])
        return b"\n".join(lines)
    if kind == "join_lines":  # a newline becomes a comma: a header or row runs into the next
        return b"\n".join([*lines[:row], b",".join(lines[row : row + 2]), *lines[row + 2 :]])
    if kind == "quote_cell":
        cells = lines[row].split(b",")
        cells[k % len(cells)] = b'"' + cells[k % len(cells)]
        lines[row] = b",".join(cells)
        return b"\n".join(lines)
    raise AssertionError(kind)


MUTATIONS = (
    "truncate", "flip", "insert", "bom", "crlf", "cr_only", "encoding", "huge_field", "extra_column",
    "drop_column", "duplicate_header", "drop_line", "repeat_line", "join_lines", "quote_cell",
)


@st.composite
def mutated(draw: st.DrawFn, data: bytes, most: int = 3) -> bytes:
    """``data`` after one to ``most`` mutations."""
    for _ in range(draw(st.integers(1, most))):
        data = draw(mutation(data))
    return data
