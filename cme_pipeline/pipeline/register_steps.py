"""The steps of ``cme_registers``: import the register exports an analyst drops in an LA's inbox.

An export is named by its register (``ehe.csv``, ``school_census-autumn.xlsx``), never by a child.
Each one is imported whole or refused (``cme_pipeline.la.register_import``) and then shredded
either way: the LA's MIS still has the original, and no file of children's data may stay outside
the store. A refusal leaves ``<file>.problems.txt`` in the inbox, naming columns and rows only.
Module-level imports stay light: the DAG file imports this module at parse time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cme_pipeline.areas import parse_la_codes
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.errors import CmeError, UsageError
from cme_pipeline.schemas import REGISTER_SOURCES

if TYPE_CHECKING:
    from cme_pipeline.home import Home
    from cme_pipeline.la.register_import import Prepared

log = logging.getLogger(__name__)

EXPORT_SUFFIXES = ("csv", "txt", "tsv", "xlsx")
PROBLEMS_SUFFIX = ".problems.txt"
# A file written to in the last minute may still be copying in; a half-copied export could
# import as a shorter register, so it waits for the next run.
SETTLE_SECONDS = 60
_EXPORT_NAME = re.compile(
    rf"({'|'.join(REGISTER_SOURCES)})(?:-.*)?\.(?:{'|'.join(EXPORT_SUFFIXES)})", re.IGNORECASE | re.DOTALL
)


def register_of(file_name: str) -> str | None:
    """The register an export's name says it holds (``EHE-june.CSV`` -> ``ehe``), else None."""
    if file_name.startswith(".") or file_name.lower().endswith(PROBLEMS_SUFFIX):
        return None
    found = _EXPORT_NAME.fullmatch(file_name)
    return found.group(1).lower() if found else None


def mapping_file(settings: Settings, la_code: str, source: str) -> Path:
    """The LA's own mapping for a register's exports, used instead of the preset when it exists."""
    return settings.la_dir(la_code) / "registers_mapping" / f"{source}.toml"


def waiting_exports(params: Mapping[str, Any]) -> list[dict[str, str]]:
    """Exports waiting in the registers inbox of each LA in ``params['la_codes']``, oldest first.

    Files with another name are left alone and counted in the log, not named: a name outside the
    convention is the one name we cannot vouch for, and the file stays visible in the inbox.
    """
    settings = load_settings()
    waiting: list[dict[str, str]] = []
    for code in parse_la_codes(",".join(params["la_codes"])):
        waiting += [{"la_code": code, "file": path.name} for path in _exports(settings, code)]
    return waiting


def _exports(settings: Settings, la_code: str) -> list[Path]:
    inbox = settings.registers_inbox(la_code)
    if not inbox.is_dir():
        return []
    found: list[tuple[float, str, Path]] = []
    other = settling = 0
    for path in inbox.iterdir():
        if path.name.startswith(".") or path.name.lower().endswith(PROBLEMS_SUFFIX):
            continue
        # Never a symlink: shredding would overwrite whatever it points at.
        if path.is_symlink() or not path.is_file() or register_of(path.name) is None:
            other += 1
            continue
        modified = path.stat().st_mtime
        if time.time() - modified < SETTLE_SECONDS:
            settling += 1
            continue
        found.append((modified, path.name, path))
    if other:
        log.warning("LA %s: %d file(s) in the registers inbox not named <register>.<ext> or <register>-<anything>.<ext> "
                    "(registers %s; ext %s): not imported", la_code, other, ", ".join(REGISTER_SOURCES),
                    ", ".join(EXPORT_SUFFIXES))
    if settling:
        log.info("LA %s: %d export(s) changed in the last minute (still copying?) wait for the next run", la_code, settling)
    return [path for _, _, path in sorted(found)]


def import_export(la_code: str, file_name: str, run_id: str | None) -> dict[str, Any]:
    """Import one export from the LA's registers inbox, replacing its register, then shred it.

    The mapping is the LA's ``registers_mapping/<register>.toml`` if it exists, else the register's
    preset; the export was taken on the day of its modification time. A refused export is shredded
    too, after its problems (columns and rows, never values) are written to ``<file>.problems.txt``.

    Args:
        la_code: the LA.
        file_name: the export's name in the inbox (from ``waiting_exports``).
        run_id: the Airflow run id, which the ledger records.

    Raises:
        RegisterRefused: the export (or the LA's mapping file) failed a check; recorded in the ledger.
    """
    from cme_pipeline import durable
    from cme_pipeline.home import open_home
    from cme_pipeline.la.register_import import RegisterRefused, import_register

    if not run_id:
        raise CmeError("an import needs the Airflow run id")
    (code,) = parse_la_codes(la_code)
    source = register_of(file_name)
    if source is None or Path(file_name).name != file_name:
        raise CmeError(f"LA {code}: {file_name!r} is not the name of a register export")
    settings = load_settings()
    path = settings.registers_inbox(code) / file_name
    if path.is_symlink() or not path.is_file():
        raise CmeError(f"LA {code}: {file_name} is no longer in the registers inbox")
    as_of = min(dt.date.fromtimestamp(path.stat().st_mtime), dt.date.today())
    home = open_home(settings)
    problems_file = path.with_name(file_name + PROBLEMS_SUFFIX)
    try:
        done = import_register(home, code, _prepare(home, code, source, path), as_of=as_of, run_id=run_id)
    except RegisterRefused as exc:
        durable.write_atomic(problems_file, _problems_text(file_name, source, code, run_id, exc.problems))
        durable.shred_file(path)
        log.warning("LA %s: %s refused (%d problem(s), listed in %s); the export is deleted",
                    code, file_name, len(exc.problems), problems_file.name)
        raise
    durable.shred_file(path)
    problems_file.unlink(missing_ok=True)  # an earlier refusal of this name is answered
    log.info("LA %s: %s imported into the %s register: %d rows (taken %s); the export is deleted",
             code, file_name, source, done.rows, as_of.isoformat())
    return {"la_code": code, "register": source, "rows": done.rows}


def _prepare(home: Home, la_code: str, source: str, path: Path) -> Prepared:
    """The export read and checked; an unreadable export or mapping file becomes one problem, so
    it is refused (recorded, shredded) like any other."""
    from cme_pipeline.la.register_import import prepare
    from cme_pipeline.la.register_mapping import load_mapping, preset

    mapping_path = mapping_file(home.settings, la_code, source)
    try:
        mapping = load_mapping(source, mapping_path) if mapping_path.is_file() else preset(source)
        return prepare(path, mapping)
    except UsageError as exc:  # ExportUnreadable too; their messages name files and headings only
        return _unusable(source, path, str(exc))


def _unusable(source: str, path: Path, problem: str) -> Prepared:
    import pandas as pd

    from cme_pipeline.la.register_import import Prepared

    return Prepared(source=source, file_name=path.name, file_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                    encoding="", delimiter="", mapping=[], rows_read=0, blank_rows=0, merged_duplicates=0,
                    columns_dropped=0, frame=pd.DataFrame(), problems=[problem])


def _problems_text(file_name: str, source: str, la_code: str, run_id: str, problems: list[str]) -> bytes:
    lines = [
        f"{file_name} was not imported into LA {la_code}'s {source} register (run {run_id}).",
        "The register is unchanged and the export has been deleted. Correct these in the system it came "
        f"from (or in registers_mapping/{source}.toml) and drop a fresh export:",
        *(f"- {p}" for p in problems),
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")
