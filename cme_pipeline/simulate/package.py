"""Package a plaintext extract as the NHS partner does: encrypt to the LA, sign, deliver."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from cme_pipeline.config import Settings
from cme_pipeline.crypto import DELIVERY_SUFFIX, PARTNER_SIGNING_KEY, seal_delivery
from cme_pipeline.durable import write_atomic
from cme_pipeline.schemas import EXTRACT_SCHEMA_VERSION
from cme_pipeline.simulate.partner import connect_la, partner_keys, take_prekey
from cme_pipeline.simulate.receipts import record_packaged


def count_records(plaintext: bytes) -> int:
    """Data rows in a CSV (after the header), counted as a CSV reader sees them.

    Undecodable bytes are replaced for counting only: packaging never judges content, the LA's
    checks do.
    """
    reader = csv.reader(io.StringIO(plaintext.decode("utf-8", errors="replace"), newline=""))
    csv.field_size_limit(2**31 - 1)
    rows = sum(1 for row in reader if row)
    return max(rows - 1, 0)


def package_extract(
    settings: Settings,
    la_code: str,
    plaintext: bytes,
    *,
    extract_date: dt.date | None = None,
    declared_rows: int | None = None,
    signing_key: str = PARTNER_SIGNING_KEY,
    top_up: bool = True,
) -> Path:
    """Encrypt and sign an extract for an LA and place it in the LA's inbox; return its path.

    The extract is encrypted to one unused one-time receiving key of the LA. The file appears in
    the inbox atomically (written under a temporary name, then renamed), so the LA never sees
    half a delivery.

    Args:
        settings: where the home is.
        la_code: the recipient LA.
        plaintext: the extract CSV bytes.
        extract_date: the extract's date (default today).
        declared_rows: the row count to declare in the manifest (default: counted). Tests use
            this to check that the LA catches a mismatch.
        signing_key: key-store name of the signing key (tests use a rogue key).
        top_up: the embedded simulation publishes prekeys for the LA when the partner has none
            left; without it (``cme partner package``) only at first contact, and a partner that
            has used every prekey refuses.

    Raises:
        NoPrekeyLeft: no unused prekey of the LA is left.
    """
    connect_la(settings, la_code, minimum=1 if top_up else 0)
    manifest, blob = seal_delivery(
        partner_keys(settings),
        plaintext,
        la_code=la_code,
        prekey=take_prekey(settings, la_code),
        extract_date=extract_date or dt.date.today(),
        schema_version=EXTRACT_SCHEMA_VERSION,
        row_count=count_records(plaintext) if declared_rows is None else declared_rows,
        signing_key=signing_key,
    )
    final = settings.inbox(la_code) / f"{manifest.delivery_id}{DELIVERY_SUFFIX}"
    write_atomic(final, blob)  # under a dot-name first: the inbox never shows half a delivery
    record_packaged(settings, la_code, manifest.delivery_id, manifest.extract_date)  # a receipt is due
    return final
