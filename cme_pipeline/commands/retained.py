"""``cme retained list``: the retained children, decrypted for the CME officer."""

from __future__ import annotations

import argparse
import sys

from cme_pipeline.config import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme retained list``."""
    p = sub.add_parser("retained", help="children retained for CME follow-up")
    actions = p.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list the retained children (decrypted) of one LA")
    listing.add_argument("--la", required=True, help="the LA's ONS code")
    listing.add_argument("--run", help="only children retained by this run")
    listing.add_argument("--format", choices=("table", "csv"), default="table", help="output format")
    listing.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the retained set (to the officer's terminal only; nothing is logged)."""
    from cme_pipeline.commands.review import one_la
    from cme_pipeline.home import open_home
    from cme_pipeline.la.minimise import list_retained
    from cme_pipeline.la.review import render_pack, visible

    frame = list_retained(open_home(settings), one_la(args.la), args.run)
    frame = frame.astype(object).where(frame.notna(), "")
    if args.format == "csv":
        sys.stdout.write(render_pack(frame, "csv"))
        return 0
    if frame.empty:
        sys.stdout.write("no retained children\n")
        return 0
    shown = ["outcome", "retention_expiry", "nhs_number", "forename", "surname", "dob", "sex",
             "address_line1", "postcode", "best_register", "best_probability"]
    rows = [[str(visible(v)) for v in r] for r in frame[shown].itertuples(index=False)]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(shown)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(shown, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    sys.stdout.write("\n".join(line.rstrip() for line in lines) + f"\n{len(rows)} retained\n")
    return 0
