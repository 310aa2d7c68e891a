"""``cme partner package``: package a plaintext extract as the NHS partner would."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from cme_pipeline.areas import parse_la_codes
from cme_pipeline.config import Settings
from cme_pipeline.crypto.boundary import PARTNER_SIGNING_KEY
from cme_pipeline.errors import UsageError
from cme_pipeline.simulate.package import package_extract


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme partner package``."""
    partner = sub.add_parser("partner", help="act as the NHS partner")
    actions = partner.add_subparsers(dest="action", required=True)
    p = actions.add_parser("package", help="encrypt and sign a plaintext extract into an LA inbox")
    p.add_argument("plain", type=Path, help="plaintext extract CSV")
    p.add_argument("--la", required=True, help="the recipient LA's ONS code")
    p.add_argument("--extract-date", type=dt.date.fromisoformat, help="YYYY-MM-DD (default today)")
    p.add_argument("--declare-rows", type=int, help="row count to declare (default: counted)")
    p.add_argument("--signing-key", default=PARTNER_SIGNING_KEY, help=argparse.SUPPRESS)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Package one file and print where the delivery landed."""
    codes = parse_la_codes(args.la)
    if len(codes) != 1:
        raise UsageError("--la takes exactly one LA code for packaging")
    try:
        plaintext = args.plain.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.plain}: {exc.strerror}") from None
    path = package_extract(
        settings,
        codes[0],
        plaintext,
        extract_date=args.extract_date,
        declared_rows=args.declare_rows,
        signing_key=args.signing_key,
    )
    sys.stdout.write(f"{path}\n")
    return 0
