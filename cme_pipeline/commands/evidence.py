"""``cme evidence``: verify the evidence, export the verification key, render reports."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from cme_pipeline.config import Settings
from cme_pipeline.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme evidence verify|public-key|report|ropa``."""
    p = sub.add_parser("evidence", help="verify the evidence ledger, certificates and reports")
    actions = p.add_subparsers(dest="action", required=True)
    verify = actions.add_parser("verify", help="check ledger, signatures, certificates and Airflow history")
    verify.add_argument("--run", help="one Airflow run id (default: every run)")
    verify.add_argument("--la", help="LA code(s), comma-separated (default: every LA with evidence)")
    verify.set_defaults(handler=run_verify)
    key = actions.add_parser("public-key", help="print an LA's evidence verification key (PEM)")
    key.add_argument("--la", required=True, help="the LA's ONS code")
    key.set_defaults(handler=run_public_key)
    report = actions.add_parser("report", help="render the DPO report of one run")
    report.add_argument("--la", required=True, help="the LA's ONS code")
    report.add_argument("--run", required=True, help="the Airflow run id")
    report.set_defaults(handler=run_report)
    ropa = actions.add_parser("ropa", help="write the record of processing (Article 30)")
    ropa.set_defaults(handler=run_ropa)


def _codes(spec: str | None) -> list[str] | None:
    if not spec:
        return None
    from cme_pipeline.areas import parse_la_codes

    return parse_la_codes(spec)


def run_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Print an OK summary (exit 0) or one problem per line on stderr (exit 1)."""
    from cme_pipeline.evidence import verify
    from cme_pipeline.home import open_home

    report = verify(settings, open_home(settings).keys, args.run, _codes(args.la))
    for note in report.notes:
        sys.stdout.write(f"note: {note}\n")
    if report.ok:
        scope = f"run {args.run}" if args.run else "all runs"
        sys.stdout.write(f"evidence OK ({scope}): {report.summary()}\n")
        return 0
    for problem in report.problems:
        sys.stderr.write(f"{problem}\n")
    sys.stderr.write(f"cme evidence verify: {len(report.problems)} problem(s) found ({report.summary()})\n")
    return 1


def run_public_key(args: argparse.Namespace, settings: Settings) -> int:
    """Write the LA's evidence verification key (PEM) on stdout."""
    from cme_pipeline.areas import LA_NAMES
    from cme_pipeline.crypto import signing
    from cme_pipeline.home import open_home

    if args.la not in LA_NAMES:
        raise UsageError(f"unknown LA code {args.la!r:.20}")
    sys.stdout.write(signing.public_key_pem(open_home(settings).keys, args.la).decode())
    return 0


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    """Render one run's DPO report and print its path."""
    from cme_pipeline.evidence import render_report
    from cme_pipeline.home import open_home
    from cme_pipeline.la.follow_up import report_summary

    home = open_home(settings)
    summary = report_summary(home, args.la, dt.date.today())
    sys.stdout.write(f"{render_report(settings, home.keys, args.la, args.run, summary)}\n")
    return 0


def run_ropa(args: argparse.Namespace, settings: Settings) -> int:
    """Write the record of processing and print its path."""
    from cme_pipeline.evidence.ropa import render_ropa

    sys.stdout.write(f"{render_ropa(settings)}\n")
    return 0
