"""Importing an LA's own register export: read, map, clean, validate, then replace whole or refuse.

Nothing is written unless every check passes: the registers Great Expectations suite and the
checks only the import can make (dates in the export's format, codes, required cells, the same
id on two different children). A refused file leaves the current register as it was. Problems
name the export's column and row, never a value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cme_pipeline.errors import CmeError
from cme_pipeline.home import Home
from cme_pipeline.la.register_files import Export, read_export
from cme_pipeline.la.register_mapping import ColumnMapping, Resolved, describe, resolve
from cme_pipeline.schemas import SCHOOL_TYPES, register_columns, register_fields

MAX_ROWS_NAMED = 5
# Which registration of a dual-registered pupil the census keeps: current (single), then main.
_ENROLMENT_ORDER = {"C": 0, "M": 1, "S": 3}
_SEX = {"m": "M", "male": "M", "boy": "M", "f": "F", "female": "F", "girl": "F",
        "u": "U", "unknown": "U", "not known": "U", "notknown": "U", "not specified": "U",
        "indeterminate": "U", "x": "U", "i": "U"}
_SPACES = re.compile(r"\s+")


class RegisterRefused(CmeError):
    """The export failed a check; nothing was written. ``problems`` has one line per problem."""

    exit_code = 4

    def __init__(self, source: str, name: str, problems: list[str]) -> None:
        super().__init__(f"register {source}: {name} refused, {len(problems)} problem(s); the current register is unchanged")
        self.problems = problems


@dataclass
class Prepared:
    """An export read, mapped and checked: what ``--dry-run`` shows and what an import writes."""

    source: str
    file_name: str
    file_sha256: str
    encoding: str
    delimiter: str
    mapping: list[str]  # lines: contract column <- headings
    rows_read: int
    blank_rows: int
    merged_duplicates: int  # rows dropped as the same child listed twice (dual registration)
    columns_dropped: int  # headings of the export nothing reads
    frame: pd.DataFrame  # contract columns, cleaned; empty when there are problems
    problems: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """Counts and the mapping, for the analyst's terminal (headings and numbers only)."""
        how = self.encoding + (f", delimiter {self.delimiter!r}" if self.delimiter else "")
        lines = [f"file: {self.file_name} ({how}), sha256 {self.file_sha256[:16]}…", *self.mapping,
                 f"rows read: {self.rows_read}; blank rows skipped: {self.blank_rows}; "
                 f"duplicate rows merged: {self.merged_duplicates}; rows to load: {len(self.frame)}"]
        return lines


def prepare(path: Path, mapping: ColumnMapping, *, sheet: str | None = None) -> Prepared:
    """Read ``path`` with ``mapping`` and run every check; never writes anything.

    Args:
        path: the export (CSV/text or .xlsx).
        mapping: a preset or mapping file for the register.
        sheet: the .xlsx worksheet (default: the first).

    Raises:
        ExportUnreadable: the file cannot be read at all.
    """
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    export = read_export(path, mapping.wanted(), sheet=sheet)
    resolved = resolve(mapping, export.headings)
    prepared = Prepared(
        source=mapping.source, file_name=path.name, file_sha256=digest, encoding=export.encoding,
        delimiter=export.delimiter, mapping=describe(resolved, mapping.name), rows_read=len(export.rows),
        blank_rows=export.blank_rows, merged_duplicates=0, columns_dropped=len(resolved.ignored),
        frame=pd.DataFrame(columns=list(register_columns(mapping.source))),
    )
    if resolved.unmapped_required:
        prepared.problems = [
            f"column {c}: no heading of the export maps to it ({_looked_for(mapping, c)}); "
            "give a mapping file with --mapping" for c in resolved.unmapped_required
        ]
        return prepared
    frame, rows, problems = _clean(export, resolved)
    if not problems:
        frame, rows, merged, problems = _merge_duplicates(frame, rows, resolved)
        prepared.merged_duplicates = merged
    if not problems:
        problems = _suite_problems(frame, rows, resolved)
    prepared.problems = problems
    if not problems:
        prepared.frame = frame
    return prepared


def _looked_for(mapping: ColumnMapping, column: str) -> str:
    candidates = mapping.columns.get(column, ())
    return "looked for " + ", ".join(repr(h) for h in candidates[:4]) if candidates else "not in the mapping"


def _rows_text(rows: list[int], total: int | None = None) -> str:
    total = len(rows) if total is None else total
    shown = ", ".join(str(r) for r in rows[:MAX_ROWS_NAMED])
    more = total - min(len(rows), MAX_ROWS_NAMED)
    return (f"row {shown}" if total == 1 else f"rows {shown}") + (f" and {more} more" if more > 0 else "")


def _where(resolved: Resolved, column: str) -> str:
    headings = resolved.sources.get(column)
    return f"column {column} (heading {' + '.join(repr(h) for h in headings)})" if headings else f"column {column}"


def _clean(export: Export, resolved: Resolved) -> tuple[pd.DataFrame, list[int], list[str]]:
    """The export's kept cells as contract columns, cleaned; problems name column and rows."""
    index = {h: i for i, h in enumerate(export.kept)}
    numbers = [n for n, _ in export.rows]
    data: dict[str, list[str | None]] = {}
    problems: list[str] = []
    for f in register_fields(resolved.source):
        headings = resolved.sources.get(f.name)
        if headings:
            positions = [index[h] for h in headings]
            if f.name == "address":
                raw = [", ".join(v[p] for p in positions if v[p]) for _, v in export.rows]
            else:
                raw = [v[positions[0]] for _, v in export.rows]
        else:
            raw = [resolved.constants.get(f.name, "")] * len(export.rows)
        values, bad = _normalise(f.name, f.kind, raw, resolved.date_formats)
        if bad:
            what = {"date": "not a date in " + ("the mapping's date_format" if len(resolved.date_formats) == 1
                                                 else "a known format (YYYY-MM-DD or DD/MM/YYYY)"),
                    "sex": "not a known sex or gender code (M, F, U, Male, Female, Unknown)"}.get(f.kind, "")
            if f.name == "school_type":
                what = f"not a known school type ({', '.join(SCHOOL_TYPES)})"
            problems.append(f"{_where(resolved, f.name)}: {what} at {_rows_text([numbers[i] for i in bad])}")
        if f.required:
            empty = [i for i, v in enumerate(values) if not v and i not in set(bad)]
            if empty:
                problems.append(f"{_where(resolved, f.name)}: empty at {_rows_text([numbers[i] for i in empty])} "
                                "(every record needs it)")
        data[f.name] = values
    return pd.DataFrame(data, columns=list(register_columns(resolved.source))), numbers, problems


def _normalise(name: str, kind: str, raw: list[str], formats: tuple[str, ...]) -> tuple[list[str | None], list[int]]:
    """Cleaned values ("" -> None) and the positions that could not be read."""
    out: list[str | None] = []
    bad: list[int] = []
    for i, value in enumerate(raw):
        value = _SPACES.sub(" ", value).strip()
        if not value:
            out.append(None)
            continue
        if kind == "date":
            parsed = _date(value, formats)
            if parsed is None:
                bad.append(i)
            out.append(parsed)
        elif kind == "sex":
            code = _SEX.get(value.casefold())
            if code is None:
                bad.append(i)
            out.append(code)
        elif name == "postcode":
            compact = value.replace(" ", "").upper()
            out.append(f"{compact[:-3]} {compact[-3:]}" if 5 <= len(compact) <= 7 else value.upper())
        elif name == "school_type":
            lowered = value.casefold()
            chosen = next((t for t in SCHOOL_TYPES if t in lowered), None)
            if chosen is None:
                bad.append(i)
            out.append(chosen)
        elif name == "enrolment_status":
            out.append(value.upper())
        else:
            out.append(value)
    return out, bad


def _date(value: str, formats: tuple[str, ...]) -> str | None:
    for fmt in formats:
        try:
            return dt.datetime.strptime(value, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def _merge_duplicates(
    frame: pd.DataFrame, rows: list[int], resolved: Resolved
) -> tuple[pd.DataFrame, list[int], int, list[str]]:
    """One row per id: the same child listed twice (a dual registration) is kept once, by
    enrolment status; two different children under one id is a problem."""
    ids = frame["record_id"]
    dup = ids.duplicated(keep=False)
    if not dup.any():
        return frame, rows, 0, []
    person = (frame["forename"].fillna("").str.casefold() + "|" + frame["surname"].fillna("").str.casefold()
              + "|" + frame["dob"].fillna(""))
    conflicts: list[int] = []
    for _, group in frame[dup].groupby("record_id", sort=False):
        if person[group.index].nunique() > 1:
            conflicts.extend(rows[i] for i in group.index)
    if conflicts:
        return frame, rows, 0, [
            f"{_where(resolved, 'record_id')}: the same id on different children (name or date of birth differ) "
            f"at {_rows_text(sorted(conflicts))}"
        ]
    order = frame.get("enrolment_status", pd.Series("", index=frame.index)).fillna("").map(
        lambda s: _ENROLMENT_ORDER.get(s, 2))
    ranked = frame.assign(_rank=order.to_numpy(), _row=range(len(frame))).sort_values(["_rank", "_row"], kind="stable")
    keep = ranked.drop_duplicates("record_id", keep="first").sort_values("_row")
    kept_rows = [rows[i] for i in keep["_row"]]
    merged = len(frame) - len(keep)
    return keep.drop(columns=["_rank", "_row"]).reset_index(drop=True), kept_rows, merged, []


def _suite_problems(frame: pd.DataFrame, rows: list[int], resolved: Resolved) -> list[str]:
    """The registers GX suite, as at every run; failures as one line each with the file's rows."""
    from cme_pipeline.quality import check_register

    outcome = check_register(resolved.source, frame)
    lines = []
    for e in outcome.failed:
        where = _where(resolved, e.column) if e.column else "the register"
        at = f" at {_rows_text([rows[r - 1] for r in e.rows], e.unexpected_count)}" if e.rows else ""
        lines.append(f"{where}: check {e.name} failed{at} ({e.explain.rstrip('.')})")
    return lines


@dataclass(frozen=True)
class Imported:
    """What an import wrote (counts and hashes, for the terminal and the ledger)."""

    source: str
    rows: int
    replaced_rows: int
    file_sha256: str
    as_of: dt.date


def import_register(
    home: Home, la_code: str, prepared: Prepared, *, as_of: dt.date, run_id: str
) -> Imported:
    """Replace the LA's copy of the register with a prepared export; record it in the ledger.

    Args:
        home: the composition root.
        la_code: the LA.
        prepared: ``prepare``'s result.
        as_of: the day the export was taken.
        run_id: the ledger run id (an Airflow run's, or ``registers__<time>`` from the CLI).

    Raises:
        RegisterRefused: the export had problems (recorded in the ledger; nothing replaced).
    """
    from cme_pipeline import evidence
    from cme_pipeline.store import register_loads_of, replace_register

    settings = home.settings
    if as_of > dt.date.today():
        raise CmeError(f"register {prepared.source}: the date the export was taken (--as-of) is in the future")
    if prepared.problems:
        evidence.record(settings, la_code, run_id, "registers_refused", {
            "register": prepared.source, "file_sha256": prepared.file_sha256,
            "problems": len(prepared.problems), "rows_read": prepared.rows_read,
        })
        evidence.checkpoint(settings, home.keys, la_code)
        raise RegisterRefused(prepared.source, prepared.file_name, prepared.problems)
    engine = home.store(la_code)
    before = register_loads_of(engine, la_code).get(prepared.source)
    rows = replace_register(engine, la_code, prepared.source, prepared.frame,
                            as_of=as_of, origin="file", file_sha256=prepared.file_sha256)
    evidence.record(settings, la_code, run_id, "registers_imported", {
        "register": prepared.source, "rows": rows, "replaced_rows": before.rows if before else 0,
        "file_sha256": prepared.file_sha256, "as_of": as_of.isoformat(),
        "merged_duplicates": prepared.merged_duplicates, "columns_dropped": prepared.columns_dropped,
    })
    evidence.checkpoint(settings, home.keys, la_code)
    return Imported(prepared.source, rows, before.rows if before else 0, prepared.file_sha256, as_of)
