"""``cme registers import|status|mapping``: an LA loads its own school census, EOTAS, EHE and CME exports."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from cme_pipeline.config import Settings
from cme_pipeline.errors import UsageError
from cme_pipeline.schemas import REGISTER_SOURCES


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme registers``."""
    p = sub.add_parser("registers", help="load the LA's own education registers from its exports")
    actions = p.add_subparsers(dest="action", required=True)
    imp = actions.add_parser("import", help="validate an export (CSV or .xlsx) and replace the register with it")
    imp.add_argument("--la", required=True, help="the LA's ONS code")
    imp.add_argument("--register", required=True, choices=REGISTER_SOURCES, help="which register the file is")
    imp.add_argument("file", type=Path, help="the export: .csv/.txt (any delimiter; UTF-8, UTF-16 or Windows-1252) or .xlsx")
    how = imp.add_mutually_exclusive_group()
    how.add_argument("--preset", help="a built-in column mapping (default: the usual one for the register)")
    how.add_argument("--mapping", type=Path, help="a TOML file mapping the export's headings to the register's columns")
    imp.add_argument("--sheet", help="the worksheet of an .xlsx (default: the first)")
    imp.add_argument("--as-of", type=_date, help="the day the export was taken, YYYY-MM-DD (default: today)")
    imp.add_argument("--dry-run", action="store_true", help="show the mapping, counts and problems; write nothing")
    imp.set_defaults(handler=run_import)
    status = actions.add_parser("status", help="each register's size, date and freshness")
    status.add_argument("--la", required=True, help="the LA's ONS code")
    status.set_defaults(handler=run_status)
    mapping = actions.add_parser("mapping", help="print a mapping file to start from")
    mapping.add_argument("--register", required=True, choices=REGISTER_SOURCES)
    mapping.add_argument("--preset", help="start from this preset (default: the register's usual one)")
    mapping.set_defaults(handler=run_mapping)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a date written YYYY-MM-DD") from None


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    """Check the export; write it (all or nothing) unless ``--dry-run``; print counts and problems."""
    from cme_pipeline import evidence
    from cme_pipeline.commands.review import one_la
    from cme_pipeline.home import open_home
    from cme_pipeline.la.register_import import RegisterRefused, import_register, prepare
    from cme_pipeline.la.register_mapping import load_mapping, preset

    la_code = one_la(args.la)
    if args.mapping is not None and not args.mapping.is_file():
        raise UsageError(f"mapping file {args.mapping.name} does not exist")
    mapping = load_mapping(args.register, args.mapping) if args.mapping else preset(args.register, args.preset)
    prepared = prepare(args.file, mapping, sheet=args.sheet)
    sys.stdout.write("\n".join(prepared.summary()) + "\n")
    if args.dry_run:
        for line in prepared.problems:
            sys.stdout.write(f"problem: {line}\n")
        verdict = "would be refused" if prepared.problems else "would replace the current register"
        sys.stdout.write(f"dry run: {verdict}; nothing written\n")
        return 4 if prepared.problems else 0
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    try:
        done = import_register(open_home(settings), la_code, prepared, as_of=args.as_of or dt.date.today(),
                               run_id=f"{evidence.REGISTERS_RUN_PREFIX}{now}")
    except RegisterRefused as exc:
        for line in exc.problems:
            sys.stderr.write(f"cme registers import: {line}\n")
        raise
    sys.stdout.write(f"{done.source}: {done.rows} rows loaded (replacing {done.replaced_rows}), "
                     f"taken {done.as_of.isoformat()}\n")
    return 0


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    """One line per register: rows, the day it was taken, its age and whether a run may use it."""
    from cme_pipeline.commands.review import one_la
    from cme_pipeline.home import open_home
    from cme_pipeline.store import register_loads_of

    la_code = one_la(args.la)
    loads = register_loads_of(open_home(settings).store(la_code), la_code)
    today = dt.date.today()
    sys.stdout.write(f"{'register':<14} {'rows':>7}  {'taken':<10} {'age':>5}  {'origin':<9} status\n")
    for source in REGISTER_SOURCES:
        load = loads.get(source)
        if load is None:
            sys.stdout.write(f"{source:<14} {'-':>7}  {'-':<10} {'-':>5}  {'-':<9} never loaded: runs refuse\n")
            continue
        age = (today - load.as_of).days
        verdict = ("too old: runs refuse" if age > settings.register_max_days
                   else "old: runs warn" if age > settings.register_warn_days else "fresh")
        sys.stdout.write(f"{source:<14} {load.rows:>7}  {load.as_of.isoformat():<10} {age:>5}  {load.origin:<9} {verdict}\n")
    return 0


def run_mapping(args: argparse.Namespace, settings: Settings) -> int:
    """Print a mapping file for the register, from a preset's headings."""
    from cme_pipeline.la.register_mapping import as_template, preset

    sys.stdout.write(as_template(preset(args.register, args.preset)))
    return 0
