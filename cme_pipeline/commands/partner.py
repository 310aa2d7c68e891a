"""``cme partner``: act as the NHS partner: package extracts, import LAs' one-time keys, witness
the LAs' evidence and chase deletion receipts."""

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
    """Add ``cme partner package|import-prekeys|public-key|witness|receipts``."""
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
    pub.add_argument("--witness", action="store_true", help="the witness key instead (for `cme keys pin-witness`)")
    pub.set_defaults(handler=run_public_key)
    wit = actions.add_parser("witness", help="answer the LAs' receipt requests: cosign each checkpoint that "
                                             "extends what the witness saw, refuse any other")
    wit.add_argument("--la", default="all", help="CODE[,CODE..] or all (default: all)")
    wit.set_defaults(handler=run_witness)
    rec = actions.add_parser("receipts", help="per delivery packaged for an LA: its deletion receipt, or overdue")
    rec.add_argument("--la", required=True, help="the LA's ONS code")
    rec.add_argument("--overdue-after", type=int, default=7, metavar="DAYS",
                     help="days after packaging a receipt is due (default 7)")
    rec.set_defaults(handler=run_receipts)


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
    """Print the partner's public signing key (or its witness key) as PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from cme_pipeline.simulate.partner import partner_keys

    if args.witness:
        from cme_pipeline.simulate.witness import witness_public_key

        raw = witness_public_key(settings)
    else:
        raw = partner_keys(settings).public_key(PARTNER_SIGNING_KEY)
    pem = Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    sys.stdout.write(pem.decode())
    return 0


def run_witness(args: argparse.Namespace, settings: Settings) -> int:
    """Answer every waiting receipt request; one line per request. Exit 0 even on refusals:
    a refusal is the witness doing its job (it is written for the LA, whose verify reports it)."""
    from cme_pipeline.simulate.witness import witness

    codes = None if args.la == "all" else parse_la_codes(args.la)
    answers = witness(settings, codes)
    for answer in answers:
        sys.stdout.write(f"{answer.line()}\n")
    kinds = [a.kind for a in answers]
    sys.stdout.write(f"{kinds.count('cosignature')} cosigned, {kinds.count('refusal')} refused\n" if answers
                     else "no receipt request waiting\n")
    return 0


def run_receipts(args: argparse.Namespace, settings: Settings) -> int:
    """List each delivery packaged for the LA with its receipt status; exit 0."""
    from cme_pipeline.simulate.receipts import receipts

    codes = parse_la_codes(args.la)
    if len(codes) != 1:
        raise UsageError("--la takes exactly one LA code")
    if args.overdue_after < 0:
        raise UsageError("--overdue-after must not be negative")
    listed = receipts(settings, codes[0], overdue_after=args.overdue_after)
    if not listed:
        sys.stdout.write(f"{codes[0]}: no delivery packaged\n")
        return 0
    sys.stdout.write(f"{'delivery':<34} {'packaged':<10}  {'status':<8} detail\n")
    for item in listed:
        sys.stdout.write(f"{item.line()}\n")
    overdue = sum(1 for i in listed if i.status == "overdue")
    sys.stdout.write(f"{codes[0]}: {len(listed)} deliveries, {sum(1 for i in listed if i.status == 'deleted')} "
                     f"with a deletion receipt, {overdue} overdue\n")
    return 0
