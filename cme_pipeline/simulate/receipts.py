"""The partner's record of what it delivered, and whether each delivery's deletion receipt came.

Packaging appends the delivery id and date to ``partner/deliveries/<la>.jsonl``; the witness
(``simulate/witness.py``) files a receipt per delivery id when it cosigns the checkpoint that
covers the run's certificate (or sees the LA reject the delivery). A delivery with no receipt
some days after packaging is overdue: the partner chases the LA. The LA can keep nothing from the
partner without it showing here.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cme_pipeline.config import Settings
from cme_pipeline.durable import append_line
from cme_pipeline.simulate.witness import read_state

DEFAULT_OVERDUE_DAYS = 7


def deliveries_file(settings: Settings, la_code: str) -> Path:
    """The partner's log of the deliveries it packaged for an LA (JSON lines)."""
    return settings.partner_dir / "deliveries" / f"{la_code}.jsonl"


def record_packaged(settings: Settings, la_code: str, delivery_id: str, extract_date: str,
                    packaged_on: dt.date | None = None) -> None:
    """Note that a delivery was packaged for the LA (ids and dates only).

    Args:
        settings: the home.
        la_code: the recipient LA.
        delivery_id: the manifest's delivery id.
        extract_date: the extract's date (ISO).
        packaged_on: the day it was packaged (default today).
    """
    day = (packaged_on or dt.date.today()).isoformat()
    line = {"delivery_id": delivery_id, "extract_date": extract_date, "packaged_on": day}
    path = deliveries_file(settings, la_code)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    append_line(path, json.dumps(line, sort_keys=True).encode())


def packaged(settings: Settings, la_code: str) -> list[dict[str, Any]]:
    """Every delivery the partner packaged for the LA, in order."""
    try:
        raw = deliveries_file(settings, la_code).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


@dataclass(frozen=True)
class ReceiptStatus:
    """One packaged delivery and what came back for it."""

    delivery_id: str
    packaged_on: str
    status: str  # deleted | rejected | waiting | overdue
    detail: str

    def line(self) -> str:
        """One line for the console (ids, dates and counts only)."""
        return f"{self.delivery_id:<34} {self.packaged_on:<10}  {self.status:<8} {self.detail}"


def receipts(settings: Settings, la_code: str, today: dt.date | None = None,
             overdue_after: int = DEFAULT_OVERDUE_DAYS) -> list[ReceiptStatus]:
    """Per packaged delivery: its deletion receipt, or how long it has waited for one.

    Args:
        settings: the home.
        la_code: the LA.
        today: the day to judge overdue by (default today).
        overdue_after: days after packaging a receipt is due.
    """
    today = today or dt.date.today()
    got = read_state(settings, la_code)["receipts"]
    out = []
    for item in packaged(settings, la_code):
        delivery_id, day = str(item["delivery_id"]), str(item["packaged_on"])
        receipt = got.get(delivery_id)
        due = dt.date.fromisoformat(day) + dt.timedelta(days=overdue_after)
        if receipt and receipt.get("status") == "deleted":
            out.append(ReceiptStatus(delivery_id, day, "deleted", (
                f"receipt {str(receipt.get('time'))[:10]}: {receipt.get('deleted')} deleted, "
                f"{receipt.get('retained')} retained (certificate of {receipt.get('certificate')})")))
        elif receipt:
            out.append(ReceiptStatus(delivery_id, day, "rejected", (
                f"the LA rejected it ({receipt.get('check')}), witnessed {str(receipt.get('time'))[:10]}: "
                f"deliver again")))
        elif today > due:
            out.append(ReceiptStatus(delivery_id, day, "overdue", f"no receipt; due {due.isoformat()}: ask the LA"))
        else:
            out.append(ReceiptStatus(delivery_id, day, "waiting", f"no receipt yet; due {due.isoformat()}"))
    return out
