"""``cme keys``: the LA's one-time receiving keys and the partner's pinned keys (LA side)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cme_pipeline.config import Settings
from cme_pipeline.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme keys publish``, ``cme keys status``, ``cme keys pin-partner`` and ``cme keys pin-witness``."""
    p = sub.add_parser("keys", help="one-time receiving keys and pinned keys of an LA")
    actions = p.add_subparsers(dest="action", required=True)
    publish = actions.add_parser("publish", help="create a signed batch of one-time receiving keys for the partner")
    publish.add_argument("--la", required=True, help="the LA's ONS code")
    publish.add_argument("--count", type=int, default=8, help="how many keys (one per future delivery; default 8)")
    publish.add_argument("--out", type=Path, help="bundle file (default: la/<code>/outbox/prekeys-<UTC time>.json)")
    publish.set_defaults(handler=run_publish)
    status = actions.add_parser("status", help="how many one-time receiving keys the LA still holds")
    status.add_argument("--la", required=True, help="the LA's ONS code")
    status.set_defaults(handler=run_status)
    pin = actions.add_parser("pin-partner", help="pin the NHS partner's public signing key (PEM file)")
    pin.add_argument("pem", type=Path, help="the partner's public key, as `cme partner public-key` prints it")
    pin.set_defaults(handler=run_pin)
    witness = actions.add_parser("pin-witness", help="pin the NHS partner's witness key (PEM file): it cosigns the "
                                                     "LA's checkpoints, and evidence verify checks them with it")
    witness.add_argument("pem", type=Path, help="the witness's public key, as `cme partner public-key --witness` prints it")
    witness.set_defaults(handler=run_pin_witness)


def run_publish(args: argparse.Namespace, settings: Settings) -> int:
    """Create the keys in the LA's key store and write the signed bundle; print its path."""
    import datetime as dt

    from cme_pipeline.commands.review import one_la
    from cme_pipeline.crypto.prekeys import publish
    from cme_pipeline.durable import write_atomic
    from cme_pipeline.home import open_home

    la_code = one_la(args.la)
    if not 1 <= args.count <= 1000:
        raise UsageError("--count must be 1 to 1000")
    out = args.out or settings.la_dir(la_code) / "outbox" / f"prekeys-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    write_atomic(out, publish(open_home(settings).keys, la_code, args.count))
    sys.stdout.write(f"{args.count} one-time receiving keys of {la_code} -> {out}\n")
    return 0


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print how many prekeys the LA holds (each waits for one delivery)."""
    from cme_pipeline.commands.review import one_la
    from cme_pipeline.crypto import held_prekeys
    from cme_pipeline.home import open_home

    la_code = one_la(args.la)
    sys.stdout.write(f"{la_code}: {len(held_prekeys(open_home(settings).keys, la_code))} one-time receiving keys held\n")
    return 0


def _ed25519_pem(pem: Path) -> bytes:
    """The raw public key in a PEM file; a usage error naming the file if it is not Ed25519."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        public = serialization.load_pem_public_key(pem.read_bytes())
    except (OSError, ValueError):
        raise UsageError(f"{pem.name} is not a readable PEM public key") from None
    if not isinstance(public, Ed25519PublicKey):
        raise UsageError(f"{pem.name} is not an Ed25519 public key")
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def run_pin(args: argparse.Namespace, settings: Settings) -> int:
    """Pin the partner's key from a PEM file; refuse a different key once one is pinned."""
    from cme_pipeline.crypto import PARTNER_PINNED

    key_id = _pin(args.pem, settings, PARTNER_PINNED, "NHS partner signing key")
    sys.stdout.write(f"NHS partner signing key {key_id} pinned\n")
    return 0


def run_pin_witness(args: argparse.Namespace, settings: Settings) -> int:
    """Pin the partner's witness key from a PEM file; refuse a different key once one is pinned."""
    from cme_pipeline.evidence.witness import WITNESS_PINNED

    key_id = _pin(args.pem, settings, WITNESS_PINNED, "NHS partner witness key")
    sys.stdout.write(f"NHS partner witness key {key_id} pinned: every checkpoint from now on goes to the witness\n")
    return 0


def _pin(pem: Path, settings: Settings, name: str, what: str) -> str:
    from cme_pipeline.crypto.signing import pin_public_key
    from cme_pipeline.errors import KeyUnavailable
    from cme_pipeline.home import open_home

    try:
        return pin_public_key(open_home(settings).keys, name, _ed25519_pem(pem), what)
    except KeyUnavailable as exc:
        raise UsageError(str(exc)) from None
