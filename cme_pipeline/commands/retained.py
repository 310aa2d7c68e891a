"""``cme retained list|resolve|figures``: the retained children for the CME officer, what each
enquiry found (which deletes the record), and the follow-up figures for the DPO."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

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
    from cme_pipeline.la.follow_up import OUTCOMES

    resolve = actions.add_parser(
        "resolve", help="record what the enquiry found for one child, or for many from a CSV (all or nothing)",
        description="Outcomes: " + "; ".join(f"{k} = {v}" for k, v in OUTCOMES.items())
        + ". Every outcome but added_to_cme and under_enquiry deletes the child's record at once; added_to_cme "
        "moves only the CME register's fields into it and deletes the rest.",
    )
    resolve.add_argument("--la", required=True, help="the LA's ONS code")
    one = resolve.add_argument_group("one child")
    one.add_argument("--ref", help="the child's ref, as `cme retained list` shows it")
    one.add_argument("--outcome", choices=tuple(OUTCOMES), help="what the enquiry found")
    resolve.add_argument("--decisions", type=Path, help="a CSV of ref,outcome rows (instead of --ref/--outcome)")
    resolve.set_defaults(handler=run_resolve)
    figures = actions.add_parser("figures", help="follow-up figures: resolved by outcome, days taken, children held by age")
    figures.add_argument("--la", required=True, help="the LA's ONS code")
    figures.set_defaults(handler=run_figures)


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the retained set (to the officer's terminal only; nothing is logged); a restricted
    child's location shows as withheld."""
    import pandas as pd

    from cme_pipeline.commands.review import one_la
    from cme_pipeline.home import open_home
    from cme_pipeline.la.follow_up import notes_frame, ref_of
    from cme_pipeline.la.minimise import list_retained
    from cme_pipeline.la.restricted import withhold
    from cme_pipeline.la.review import render_pack, visible

    la_code = one_la(args.la)
    frame = list_retained(open_home(settings), la_code, args.run)
    refs = [ref_of(d, r) for d, r in zip(frame["delivery_id"], frame["health_record_id"], strict=True)]
    frame.insert(0, "ref", pd.Series(refs, index=frame.index, dtype=object))
    frame = frame.merge(notes_frame(open_home(settings), la_code), on="ref", how="left")
    frame = withhold(frame.astype(object).where(frame.notna(), ""))
    if args.format == "csv":
        sys.stdout.write(render_pack(frame, "csv"))
        return 0
    if frame.empty:
        sys.stdout.write("no retained children\n")
        return 0
    shown = ["ref", "outcome", "follow_up", "retention_expiry", "nhs_number", "forename", "surname", "dob", "sex",
             "restricted", "address_line1", "postcode", "best_register", "best_probability"]
    rows = [[str(visible(v)) for v in r] for r in frame[shown].itertuples(index=False)]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(shown)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(shown, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    sys.stdout.write("\n".join(line.rstrip() for line in lines) + f"\n{len(rows)} retained\n")
    return 0


def run_resolve(args: argparse.Namespace, settings: Settings) -> int:
    """Apply the officer's findings (all or nothing), record them in the ledger, print the counts."""
    from cme_pipeline.commands.review import one_la
    from cme_pipeline.errors import UsageError
    from cme_pipeline.home import open_home
    from cme_pipeline.la.follow_up import read_decisions, record_findings, resolve

    la_code = one_la(args.la)
    if args.decisions is not None:
        if args.ref or args.outcome:
            raise UsageError("give either --decisions FILE or --ref with --outcome, not both")
        if not args.decisions.is_file():
            raise UsageError(f"decisions file {args.decisions.name} does not exist")
        decisions, source = read_decisions(args.decisions), args.decisions.read_bytes()
    elif args.ref and args.outcome:
        decisions, source = [(args.ref, args.outcome)], f"{args.ref},{args.outcome}".encode()
    else:
        raise UsageError("give --ref and --outcome for one child, or --decisions FILE")
    home = open_home(settings)
    result = resolve(home, la_code, decisions, dt.date.today())
    record_findings(home, la_code, result, source)
    sys.stdout.write(f"records deleted: {result.deleted}; added to the CME register (rest deleted): "
                     f"{result.added_to_cme}; still under enquiry: {result.under_enquiry}\n")
    return 0


def run_figures(args: argparse.Namespace, settings: Settings) -> int:
    """Print the follow-up figures (counts and days only)."""
    from cme_pipeline.commands.review import one_la
    from cme_pipeline.home import open_home
    from cme_pipeline.la.follow_up import INITIAL_CHECK_SCHOOL_DAYS, LABELS, figures

    f = figures(open_home(settings), one_la(args.la), dt.date.today())
    out = [f"resolved: {f.resolved}"]
    out += [f"  {LABELS[o]}: {n}" for o, n in f.resolved_by_outcome.items()]
    median = "-" if f.median_school_days is None else f"{f.median_school_days:g}"
    out.append(f"median school days from retained to resolved: {median}; resolved within "
               f"{INITIAL_CHECK_SCHOOL_DAYS} school days: {f.within_initial_check} of {f.resolved}")
    out.append(f"still held: {sum(f.held_by_age.values())} (noted still under enquiry: {f.under_enquiry})")
    out += [f"  held {label}: {n}" for label, n in f.held_by_age.items()]
    sys.stdout.write("\n".join(out) + "\n")
    return 0
