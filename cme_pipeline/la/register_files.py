"""Reading an LA's register export (CSV or Excel) into the few columns matching needs.

Exports from school MIS and case-management systems come as CSV in whatever delimiter and
encoding the system chose (Windows-1252 from older tools, UTF-8 with a BOM from Excel, UTF-16
from Excel's "Unicode text") or as ``.xlsx``. Each row keeps the row number the analyst sees
(the header is row 1), so problems can name a row without naming a value.

Only the headings asked for are ever copied out of a row: the rest of the export (ethnicity,
SEN, free school meals, parents' details) is dropped as each row is read and never reaches a
frame, a log or the store.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cme_pipeline.errors import UsageError

DELIMITERS = ",;\t|"
# The largest export read: Cardiff's census is about 10 MB as CSV; this leaves room for any LA
# while keeping a wrong file (a database dump, a video) from exhausting the machine.
MAX_EXPORT_BYTES = 512 * 1024 * 1024


class ExportUnreadable(UsageError):
    """The export cannot be read at all (format, encoding, no header row)."""


@dataclass(frozen=True)
class Export:
    """The wanted columns of an export: headings as written, and rows as (row number, values)."""

    headings: tuple[str, ...]  # every heading of the file (headings name columns, never a child)
    kept: tuple[str, ...]  # the headings whose values were kept, in this order in ``rows``
    rows: list[tuple[int, tuple[str, ...]]]
    blank_rows: int  # rows with no value at all, skipped
    encoding: str  # what the file was read as: utf-8, utf-8-sig, cp1252, utf-16, xlsx
    delimiter: str  # "" for xlsx


def heading_key(heading: str) -> str:
    """How headings are compared: case, spacing and punctuation do not matter."""
    return "".join(ch for ch in heading.casefold() if ch.isalnum())


def read_export(path: Path, wanted: Iterable[str], *, sheet: str | None = None) -> Export:
    """Read ``path`` (``.csv``/``.txt``/``.tsv`` or ``.xlsx``), keeping only the ``wanted`` headings.

    Args:
        path: the export file.
        wanted: headings to keep (compared with ``heading_key``); absent ones are simply not kept.
        sheet: the worksheet of an ``.xlsx`` (default: the first).

    Raises:
        ExportUnreadable: not a readable CSV/XLSX, too large, or no header row.
    """
    if not path.is_file():
        raise ExportUnreadable(f"register file {path.name} does not exist")
    if path.stat().st_size > MAX_EXPORT_BYTES:
        raise ExportUnreadable(f"register file {path.name} is larger than {MAX_EXPORT_BYTES // 2**20} MiB")
    keys = {heading_key(w) for w in wanted}
    if path.suffix.lower() == ".xlsx":
        rows = _xlsx_rows(path, sheet)
        encoding, delimiter = "xlsx", ""
    elif path.suffix.lower() in (".xls", ".xlsm", ".ods"):
        raise ExportUnreadable(f"register file {path.name}: save it as .xlsx or CSV first")
    else:
        text, encoding = _decode(path.read_bytes(), path.name)
        delimiter = _delimiter(text, path.name)
        rows = _csv_rows(text, delimiter)
    headings = _header(rows, keys)
    if not headings:
        raise ExportUnreadable(f"register file {path.name} has no header row")
    return _keep(path.name, headings, rows, keys, encoding, delimiter)


HEADER_SEARCH_ROWS = 20


def _header(rows: Iterator[tuple[int, Sequence[object]]], keys: set[str]) -> list[str]:
    """The header row: the first of the leading rows naming two wanted headings (exports often
    start with a title line or two), else the first non-empty row. ``rows`` is left after it."""
    skipped: list[list[str]] = []
    for _, values in rows:
        cells = [_cell(v) for v in values]
        if not any(cells):
            continue
        if sum(heading_key(c) in keys for c in cells) >= 2:
            return cells
        skipped.append(cells)
        if len(skipped) >= HEADER_SEARCH_ROWS:
            break
    # No row looks like our headings: the first non-empty row is the header, and the mapping
    # will name what is missing. Its data rows were consumed above, so this is only for messages.
    return skipped[0] if skipped else []


def _keep(
    name: str, headings: Sequence[str], rows: Iterator[tuple[int, Sequence[object]]], keys: set[str],
    encoding: str, delimiter: str,
) -> Export:
    clean = tuple(str(h or "").strip() for h in headings)
    seen: dict[str, int] = {}
    for i, h in enumerate(clean):
        k = heading_key(h)
        if k in keys and k in seen:
            raise ExportUnreadable(f"register file {name}: heading {h!r} appears twice (columns {seen[k] + 1} and {i + 1})")
        seen.setdefault(k, i)
    positions = [i for i, h in enumerate(clean) if heading_key(h) in keys]
    kept: list[tuple[int, tuple[str, ...]]] = []
    blank = 0
    for number, values in rows:
        if all(_cell(v) == "" for v in values):
            blank += 1
            continue
        # Only the wanted cells are copied: the other columns die with ``values``.
        kept.append((number, tuple(_cell(values[i]) if i < len(values) else "" for i in positions)))
    return Export(clean, tuple(clean[i] for i in positions), kept, blank, encoding, delimiter)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):  # Excel stores dates as datetimes at midnight
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():  # a school number typed as a number
        return str(int(value))
    return str(value).strip()


def _decode(raw: bytes, name: str) -> tuple[str, str]:
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="strict"), "utf-8-sig"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise ExportUnreadable(f"register file {name}: broken UTF-16 text") from None
    if raw.startswith(b"PK\x03\x04"):
        raise ExportUnreadable(f"register file {name} is an Excel or zip file: give it the .xlsx suffix")
    if b"\x00" in raw[:4096]:
        raise ExportUnreadable(f"register file {name} is not a text file")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Not UTF-8: the other encoding UK MIS exports use is Windows-1252 (ŵ and ŷ are not in it,
    # but â, ê, î, ô, û, ä, ë, ï, ö, ü, á, é and à are, which covers most Welsh names).
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        raise ExportUnreadable(f"register file {name} is neither UTF-8 nor Windows-1252 text") from None


def _delimiter(text: str, name: str) -> str:
    # The delimiter is the one most used on any of the first lines (a title line has none).
    lines = [line for line in text.splitlines()[:HEADER_SEARCH_ROWS * 2] if line.strip()][:HEADER_SEARCH_ROWS]
    counts = {d: max((line.count(d) for line in lines), default=0) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] == 0:
        raise ExportUnreadable(f"register file {name}: no delimiter (, ; tab or |) in its first lines")
    return best


def _csv_rows(text: str, delimiter: str) -> Iterator[tuple[int, Sequence[object]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    # line_num counts physical lines, as an editor or Excel shows them (blank lines included).
    for values in reader:
        yield reader.line_num, values


def _xlsx_rows(path: Path, sheet: str | None) -> Iterator[tuple[int, Sequence[object]]]:
    import zipfile

    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        raise ExportUnreadable(f"register file {path.name} is not a readable .xlsx workbook") from None
    if sheet is not None and sheet not in book.sheetnames:
        raise ExportUnreadable(f"register file {path.name} has no sheet {sheet!r} (sheets: {', '.join(book.sheetnames)})")
    ws = book[sheet] if sheet is not None else book.worksheets[0]
    try:
        yield from enumerate(ws.iter_rows(values_only=True), start=1)
    finally:
        book.close()
