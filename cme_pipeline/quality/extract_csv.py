"""Strict parsing of a decrypted health extract: structure only, before the delivery suite.

What cannot even become a table is rejected here: bytes that are not UTF-8, broken CSV quoting,
a header that is not exactly the data contract, rows with too few or too many fields, a field
longer than any real name or address. Messages name the check, the column and the data row
(1-based, the header is not a row), never a value. Column names are named only when they cannot
be personal data (see ``_safe_column_names``).
"""

from __future__ import annotations

import csv
import io
import re

import pandas as pd

from cme_pipeline.quality.results import DeliveryInvalid
from cme_pipeline.schemas import HEALTH_EXTRACT

MAX_FIELD_CHARS = 255  # longer than any name, address line or code; a 10 MB field is an attack
_COLUMN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_ ]{0,39}")


def _reject(check: str, reason: str, **counts: int) -> DeliveryInvalid:
    details = {"suite": "delivery", "stage": "parse", "failed": [{"name": check, **counts}]}
    return DeliveryInvalid(f"suite delivery failed at parse: {check}: {reason}", check=f"parse:{check}", details=details)


def parse_extract(plaintext: bytes, columns: tuple[str, ...] = HEALTH_EXTRACT) -> pd.DataFrame:
    """Parse extract CSV bytes into a frame of strings ("" for empty), or raise ``DeliveryInvalid``.

    The frame always has the ``HEALTH_EXTRACT`` columns: a column of the current contract that
    the delivery's schema did not have yet (``columns`` is that schema's) is all empty.

    Args:
        plaintext: the decrypted extract, in memory only.
        columns: the columns the header must be exactly (``schemas.EXTRACT_SCHEMAS``).
    """
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = plaintext.count(b"\n", 0, exc.start) + 1
        raise _reject("utf8", f"not valid UTF-8 at byte {exc.start} (line {line})", byte_offset=exc.start) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark is harmless; strip it
    csv.field_size_limit(2**31 - 1)  # lengths are checked below, per column, with a clear message
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise _reject("header", "the extract is empty (no header row)")
        _check_header(header, columns)
        rows = list(reader)
    except csv.Error:
        raise _reject("csv", f"malformed CSV near line {reader.line_num}", line=reader.line_num) from None
    rows = [r for r in rows if r]  # a trailing blank line is not a record
    width = len(columns)
    bad = [i for i, r in enumerate(rows, start=1) if len(r) != width]
    if bad:
        verb = "does" if len(bad) == 1 else "do"
        raise _reject("field_count", f"{_rows(bad)} {verb} not have {width} fields", rows=len(bad))
    frame = pd.DataFrame(rows, columns=list(columns), dtype=object)
    for column in columns:
        lengths = frame[column].str.len()
        too_long = lengths.index[lengths > MAX_FIELD_CHARS]
        if len(too_long):
            rows_named = [int(i) + 1 for i in too_long]
            raise _reject(
                "field_length",
                f"column {column} longer than {MAX_FIELD_CHARS} characters at {_rows(rows_named)}",
                rows=len(rows_named),
            )
    for column in HEALTH_EXTRACT:
        if column not in frame:
            frame[column] = pd.Series("", index=frame.index, dtype=object)
    return frame[list(HEALTH_EXTRACT)]


def _check_header(header: list[str], columns: tuple[str, ...]) -> None:
    if tuple(header) == columns:
        return
    expected = set(columns)
    missing = [c for c in columns if c not in header]
    extra = [c for c in header if c not in expected]
    parts = []
    if extra:
        parts.append(f"unexpected {_safe_column_names(header, extra, missing)}")
    if missing:
        parts.append(f"missing column(s) {', '.join(missing)}")
    # Only contract names are named: other repeated cells are already counted by position
    # above, and in a file without a header they are a child's values (a town that is also
    # the LA's name).
    duplicated = sorted({c for c in header if c in expected and header.count(c) > 1})
    if duplicated:
        parts.append(f"repeated column(s) {', '.join(duplicated)}")
    if not parts:
        parts.append("columns out of order")
    raise _reject(
        "exact_columns",
        "header is not exactly the health-extract columns: " + "; ".join(parts),
        extra=len(extra),
        missing=len(missing),
    )


def _safe_column_names(header: list[str], extra: list[str], missing: list[str]) -> str:
    """Name extra columns only when the header is a real header with columns added to it.

    If contract columns are also missing, the "header" may be a data row (a file without a
    header), so its cells could be a child's name: then only positions are given. Names that do
    not look like column names are never echoed.
    """
    where = [i for i, c in enumerate(header, start=1) if c not in HEALTH_EXTRACT]
    positions = ", ".join(str(i) for i in where[:5]) + (f" and {len(where) - 5} more" if len(where) > 5 else "")
    if missing or not all(_COLUMN_NAME.fullmatch(c) for c in extra):
        return f"column(s) at position {positions} (names not shown: the first row may not be a header)"
    return f"column(s) {', '.join(extra)} (position {positions})"


def _rows(rows: list[int], shown: int = 5) -> str:
    head = ", ".join(str(r) for r in rows[:shown])
    more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
    return f"row {head}" if len(rows) == 1 else f"rows {head}{more}"
