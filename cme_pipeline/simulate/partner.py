"""The simulated NHS partner's own keys and its inventory of the LAs' one-time receiving keys.

The partner keeps its signing key in its own key store under ``partner/`` and never sees an
LA's private key. It imports each LA's signed prekey bundle (pinning the LA's signing key the
first time, as a real partner would pin it from the LA's published fingerprint), hands out each
prekey once, and refuses to deliver when none is left.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cme_pipeline.config import Settings
from cme_pipeline.crypto import PARTNER_SIGNING_KEY, KeyStore, Prekey, pin_partner_key
from cme_pipeline.crypto.prekeys import DEFAULT_BATCH, publish, read_bundle
from cme_pipeline.crypto.signing import ensure_signing_key
from cme_pipeline.durable import write_atomic
from cme_pipeline.errors import CmeError
from cme_pipeline.home import open_home, open_partner_keystore


class NoPrekeyLeft(CmeError):
    """Every one-time receiving key the LA published has been used."""

    exit_code = 3


def _inventory_file(settings: Settings, la_code: str) -> Path:
    return settings.partner_dir / "prekeys" / f"{la_code}.json"


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    folder = settings.partner_dir / "prekeys"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # two packagers never hand out the same prekey
        yield
    finally:
        os.close(fd)


def _read(settings: Settings, la_code: str) -> dict[str, Any]:
    try:
        inventory: dict[str, Any] = json.loads(_inventory_file(settings, la_code).read_text())
    except FileNotFoundError:
        return {"la_code": la_code, "signer_public": None, "prekeys": []}
    return inventory


def _pinned(settings: Settings, la_code: str) -> bytes | None:
    pinned = _read(settings, la_code)["signer_public"]
    return base64.b64decode(pinned) if pinned else None


def pinned_la_key(settings: Settings, la_code: str) -> bytes | None:
    """The LA's evidence key the partner pinned from its first prekey bundle (None before that).

    The same key signs the LA's checkpoints and certificates: the witness checks them with it.
    """
    return _pinned(settings, la_code)


def import_bundle(settings: Settings, raw: bytes) -> tuple[str, int]:
    """Verify an LA's prekey bundle against its pinned key and add its prekeys; return (LA, count).

    Args:
        settings: the home (the partner's area is ``partner/``).
        raw: the bundle's bytes, as ``cme keys publish`` wrote them.
    """
    with _locked(settings):
        bundle = read_bundle(raw, lambda la_code: _pinned(settings, la_code))
        inventory = _read(settings, bundle.la_code)
        known = {p["id"] for p in inventory["prekeys"]}
        added = [p for p in bundle.prekeys if p.prekey_id not in known]
        inventory["signer_public"] = base64.b64encode(bundle.signer_public).decode()
        inventory["prekeys"] += [
            {"id": p.prekey_id, "public": base64.b64encode(p.public).decode(), "used": False} for p in added
        ]
        write_atomic(_inventory_file(settings, bundle.la_code), json.dumps(inventory, indent=1).encode())
    return bundle.la_code, len(added)


def unused_prekeys(settings: Settings, la_code: str) -> int:
    """How many of the LA's prekeys the partner has not used yet."""
    return sum(1 for p in _read(settings, la_code)["prekeys"] if not p["used"])


def take_prekey(settings: Settings, la_code: str) -> Prekey:
    """Hand out one unused prekey of the LA, marked used before the delivery is encrypted to it.

    Raises:
        NoPrekeyLeft: every prekey of the LA is used (the LA must publish more).
    """
    with _locked(settings):
        inventory = _read(settings, la_code)
        for item in inventory["prekeys"]:
            if not item["used"]:
                item["used"] = True
                write_atomic(_inventory_file(settings, la_code), json.dumps(inventory, indent=1).encode())
                return Prekey(item["id"], base64.b64decode(item["public"]))
    raise NoPrekeyLeft(
        f"no unused one-time receiving key of LA {la_code} is left: the LA must publish more "
        f"(cme keys publish --la {la_code}) and the partner import them"
    )


def partner_keys(settings: Settings) -> KeyStore:
    """The partner's own key store, its signing key created on first use."""
    keys = open_partner_keystore(settings)
    ensure_signing_key(keys, PARTNER_SIGNING_KEY)
    return keys


def connect_la(settings: Settings, la_code: str, minimum: int = 1, batch: int = DEFAULT_BATCH) -> None:
    """Embedded set-up: the LA pins the partner's keys and publishes prekeys when the partner is short.

    Both sides live in one home in the simulation; this is what the LA and the partner would
    each do by hand (``cme keys publish``, ``cme partner import-prekeys``, ``cme keys pin-partner``
    and ``cme keys pin-witness``).

    Args:
        settings: the home.
        la_code: the LA.
        minimum: publish when the partner holds fewer unused prekeys than this (with 0, only
            at first contact, when the partner has never held a prekey of the LA).
        batch: how many to publish then (at least ``minimum``).
    """
    from cme_pipeline.evidence.witness import pin_witness_key
    from cme_pipeline.simulate.witness import witness_public_key

    la_keys = open_home(settings).keys
    pin_partner_key(la_keys, partner_keys(settings).public_key(PARTNER_SIGNING_KEY))
    pin_witness_key(la_keys, witness_public_key(settings))  # the partner witnesses the LA's checkpoints
    inventory = _read(settings, la_code)["prekeys"]
    short = max(minimum - sum(1 for p in inventory if not p["used"]), 0 if inventory else 1)
    if short > 0:
        import_bundle(settings, publish(la_keys, la_code, max(batch, short)))
