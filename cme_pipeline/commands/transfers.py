"""``cme transfers list|show|acknowledge``: children transferred between LAs (the 28-day rule)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys

from cme_pipeline.config import Settings
from cme_pipeline.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme transfers``."""
    p = sub.add_parser("transfers", help="children transferred to or from other LAs (acknowledge within 28 days)")
    actions = p.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="transfers of one LA, both directions, overdue ones flagged")
    listing.add_argument("--la", required=True, help="the LA's ONS code")
    listing.add_argument("--today", type=dt.date.fromisoformat, help="judge overdue on this day (default today)")
    listing.set_defaults(handler=run_list)
    show = actions.add_parser("show", help="the record of a transfer to this LA (its officer only)")
    show.add_argument("--la", required=True, help="the receiving LA's ONS code")
    show.add_argument("--id", required=True, help="the transfer id")
    show.set_defaults(handler=run_show)
    ack = actions.add_parser("acknowledge", help="acknowledge transfers to this LA: the record is deleted, "
                                                 "the sending LA sees it acknowledged")
    ack.add_argument("--la", required=True, help="the receiving LA's ONS code")
    ack.add_argument("--id", required=True, help="ID[,ID..]")
    ack.set_defaults(handler=run_acknowledge)


def _la(code: str) -> str:
    from cme_pipeline.areas import parse_la_codes

    codes = parse_la_codes(code)
    if len(codes) != 1:
        raise UsageError("--la takes one LA's code")
    return codes[0]


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print id, direction, other LA, sent, acknowledged and status (overdue) of every transfer."""
    from cme_pipeline.home import open_home
    from cme_pipeline.la.transfers import listed

    today = args.today or dt.date.today()
    rows = listed(open_home(settings), _la(args.la))
    out = sys.stdout
    out.write(f"{'transfer':<16} {'dir':<4} {'other LA':<10} {'sent':<11} {'acknowledged':<13} status\n")
    for t in rows:
        status = "acknowledged" if t.acknowledged_on else ("OVERDUE" if t.overdue(today) else "waiting")
        out.write(f"{t.transfer_id:<16} {t.direction:<4} {t.other_la:<10} {t.sent_on.isoformat():<11} "
                  f"{t.acknowledged_on.isoformat() if t.acknowledged_on else '':<13} {status}\n")
    overdue = sum(1 for t in rows if t.overdue(today))
    out.write(f"{len(rows)} transfer(s), {overdue} overdue (not acknowledged within 28 days)\n")
    return 0


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    """Print one incoming transfer's record as CSV (to the officer's terminal only)."""
    from cme_pipeline.home import open_home
    from cme_pipeline.la.transfers import open_incoming

    record = open_incoming(open_home(settings), _la(args.la), args.id.strip())
    writer = csv.DictWriter(sys.stdout, fieldnames=list(record))
    writer.writeheader()
    writer.writerow(record)
    return 0


def run_acknowledge(args: argparse.Namespace, settings: Settings) -> int:
    """Acknowledge the given incoming transfers (all or none)."""
    from cme_pipeline.home import open_home
    from cme_pipeline.la.transfers import acknowledge

    ids = [i.strip() for i in args.id.split(",") if i.strip()]
    if not ids:
        raise UsageError("--id names no transfer")
    n = acknowledge(open_home(settings), _la(args.la), ids, dt.date.today())
    sys.stdout.write(f"acknowledged {n} transfer(s); their records are deleted here\n")
    return 0
