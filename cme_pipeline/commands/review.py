"""``cme review export|show|apply``: clerical review of `possible` matches."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from pathlib import Path

from cme_pipeline.areas import parse_la_codes
from cme_pipeline.config import Settings
from cme_pipeline.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme review export``, ``cme review show`` and ``cme review apply``."""
    p = sub.add_parser("review", help="clerical review of possible matches")
    actions = p.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="write an encrypted review pack of every possible match")
    export.add_argument("--la", required=True, help="the LA's ONS code")
    export.add_argument("--out", type=Path, help="pack file (default: under la/<code>/reports/)")
    export.set_defaults(handler=run_export)
    show = actions.add_parser("show", help="decrypt a review pack for the analyst")
    show.add_argument("pack", type=Path, help="the .cmereview file")
    show.add_argument("--la", required=True, help="the LA's ONS code")
    show.add_argument("--format", choices=("csv", "html"), default="csv", help="output format")
    show.set_defaults(handler=run_show)
    apply = actions.add_parser("apply", help="apply review decisions (CSV: review_id,decision)")
    apply.add_argument("decisions", type=Path, help="CSV with columns review_id,decision (match|no-match)")
    apply.add_argument("--la", required=True, help="the LA's ONS code")
    apply.set_defaults(handler=run_apply)


def one_la(spec: str) -> str:
    codes = parse_la_codes(spec)
    if len(codes) != 1:
        raise UsageError("--la takes exactly one LA code here")
    return codes[0]


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    """Write the pack; print its path and record count."""
    from cme_pipeline.home import open_home
    from cme_pipeline.la.review import export_pack

    path, count = export_pack(open_home(settings), one_la(args.la), args.out)
    sys.stdout.write(f"review pack: {count} possible match(es) -> {path}\n")
    return 0


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    """Print a decrypted pack (formula-safe CSV or escaped HTML) for the analyst."""
    from cme_pipeline.home import open_home
    from cme_pipeline.la.review import read_pack, render_pack

    if not args.pack.is_file():
        raise UsageError(f"review pack {args.pack.name} does not exist")
    sys.stdout.write(render_pack(read_pack(open_home(settings), one_la(args.la), args.pack), args.format))
    return 0


def run_apply(args: argparse.Namespace, settings: Settings) -> int:
    """Apply decisions all-or-nothing; print the counts."""
    from cme_pipeline import evidence
    from cme_pipeline.home import open_home
    from cme_pipeline.la.review import apply_decisions, read_decisions

    if not args.decisions.is_file():
        raise UsageError(f"decisions file {args.decisions.name} does not exist")
    la_code = one_la(args.la)
    home = open_home(settings)
    result = apply_decisions(home, la_code, read_decisions(args.decisions), dt.date.today())
    # An analyst's action, not an Airflow run: its own run id, recorded and checkpointed at once.
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    evidence.record(settings, la_code, f"{evidence.REVIEW_RUN_PREFIX}{now}", "reviewed", {
        "confirmed_matches_deleted": result.confirmed_matches, "rejected_now_unmatched": result.rejected,
        "kept_for_learning": result.kept_for_learning,
        "decisions_file_sha256": hashlib.sha256(args.decisions.read_bytes()).hexdigest(),
    })
    evidence.checkpoint(settings, home.keys, la_code)
    sys.stdout.write(
        f"confirmed matches deleted: {result.confirmed_matches}; rejected, now unmatched: {result.rejected}; "
        f"kept for learning (agreement levels only): {result.kept_for_learning}\n"
    )
    return 0
