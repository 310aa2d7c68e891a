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
    verify.add_argument("--pin", action="append", default=[], metavar="LA=KEY",
                        help="trust only this verification key for the LA: its SHA-256 fingerprint or a PEM file "
                             "kept outside the home (repeatable; adds to CME_EVIDENCE_PINS)")
    verify.set_defaults(handler=run_verify)
    key = actions.add_parser("public-key", help="print an LA's evidence verification key (PEM)")
    key.add_argument("--la", required=True, help="the LA's ONS code")
    key.add_argument("--fingerprint", action="store_true", help="print its SHA-256 fingerprint instead, to pin")
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


def _pins(given: list[str]) -> dict[str, str]:
    """``LA=KEY`` pins -> LA code -> fingerprint (a later pin for an LA wins)."""
    from cme_pipeline.areas import parse_la_codes
    from cme_pipeline.evidence.artefacts import read_pin

    out = {}
    for item in given:
        la, _, value = item.partition("=")
        if not value:
            raise UsageError("a pin must be LA=FINGERPRINT or LA=PEM_FILE")
        (code,) = parse_la_codes(la.strip())
        out[code] = read_pin(value)
    return out


def run_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Print an OK summary (exit 0) or one problem per line on stderr (exit 1)."""
    from cme_pipeline.evidence import verify
    from cme_pipeline.home import open_home

    pins = _pins([*(f"{la}={value}" for la, value in settings.evidence_pins), *args.pin])
    report = verify(settings, open_home(settings).keys, args.run, _codes(args.la), pins=pins)
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
    pem = signing.public_key_pem(open_home(settings).keys, args.la)
    if args.fingerprint:
        from cme_pipeline.evidence.artefacts import pem_fingerprint

        sys.stdout.write(f"{pem_fingerprint(pem)}\n")
        return 0
    sys.stdout.write(pem.decode())
    return 0


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    """Render one run's DPO report and print its path."""
    from cme_pipeline.evidence import checkpoint, render_report
    from cme_pipeline.home import open_home
    from cme_pipeline.la.follow_up import report_summary

    home = open_home(settings)
    summary = report_summary(home, args.la, dt.date.today())
    path = render_report(settings, home.keys, args.la, args.run, summary)
    checkpoint(settings, home.keys, args.la)  # the new report's ledger entry is signed at once
    sys.stdout.write(f"{path}\n")
    return 0


def run_ropa(args: argparse.Namespace, settings: Settings) -> int:
    """Write the record of processing and print its path."""
    from cme_pipeline.evidence.ropa import render_ropa

    sys.stdout.write(f"{render_ropa(settings)}\n")
    return 0
