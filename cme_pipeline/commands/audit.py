"""``cme audit runs``: DAG run history from Airflow's metadata database with evidence status."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from cme_pipeline.config import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme audit runs``."""
    p = sub.add_parser("audit", help="audit DAG runs against the evidence")
    actions = p.add_subparsers(dest="action", required=True)
    runs = actions.add_parser("runs", help="list DAG runs with per-LA outcome and evidence status")
    runs.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    runs.set_defaults(handler=run_runs)


def run_runs(args: argparse.Namespace, settings: Settings) -> int:
    """Print the run history; exit 0 (also when there is no history yet)."""
    from cme_pipeline.evidence.audit import COLUMNS, audit_runs
    from cme_pipeline.home import open_home

    rows = audit_runs(settings, open_home(settings).keys)
    if rows is None:
        if args.format == "json":
            sys.stdout.write("[]\n")
        elif args.format == "csv":
            sys.stdout.write(",".join(COLUMNS) + "\n")
        else:
            sys.stdout.write("no Airflow history yet\n")
        return 0
    records = [r.as_dict() for r in rows]
    if args.format == "json":
        sys.stdout.write(json.dumps(records, indent=1) + "\n")
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    else:
        sys.stdout.write(_table(COLUMNS, [[r[c] for c in COLUMNS] for r in records]))
    return 0


def _table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    if not rows:
        return "no runs in Airflow's history\n"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"
