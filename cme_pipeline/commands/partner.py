"""``cme partner``: act as the NHS partner: package extracts, import LAs' one-time keys."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from cme_pipeline.areas import parse_la_codes
from cme_pipeline.config import Settings
from cme_pipeline.crypto import PARTNER_SIGNING_KEY
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
    imp = actions.add_parser("import-prekeys", help="verify and import an LA's bundle of one-time receiving keys")
    imp.add_argument("bundle", type=Path, help="the bundle `cme keys publish` wrote")
    imp.set_defaults(handler=run_import)
    pub = actions.add_parser("public-key", help="print the partner's public signing key (PEM) for LAs to pin")
    pub.set_defaults(handler=run_public_key)


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
        top_up=False,  # a partner with no unused one-time key of the LA refuses to deliver
    )
    sys.stdout.write(f"{path}\n")
    return 0


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import a verified bundle; print how many new keys it added."""
    from cme_pipeline.errors import IntegrityError
    from cme_pipeline.simulate.partner import import_bundle, unused_prekeys

    try:
        raw = args.bundle.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.bundle}: {exc.strerror}") from None
    try:
        la_code, added = import_bundle(settings, raw)
    except IntegrityError as exc:
        raise UsageError(f"{args.bundle.name}: {exc}") from None
    sys.stdout.write(f"{la_code}: {added} one-time receiving keys imported, "
                     f"{unused_prekeys(settings, la_code)} unused\n")
    return 0


def run_public_key(args: argparse.Namespace, settings: Settings) -> int:
    """Print the partner's public signing key as PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from cme_pipeline.simulate.partner import partner_keys

    raw = partner_keys(settings).public_key(PARTNER_SIGNING_KEY)
    pem = Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    sys.stdout.write(pem.decode())
    return 0
