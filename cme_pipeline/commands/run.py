"""``cme run``: run cme_matching now, in-process, on every delivery waiting in each LA's inbox."""

from __future__ import annotations

import argparse
import sys
import time

from cme_pipeline.areas import parse_la_codes
from cme_pipeline.config import Settings, check_thresholds
from cme_pipeline.embedded_workers import ShareResult
from cme_pipeline.errors import CmeError, UsageError
from cme_pipeline.pipeline.lock import home_lock
from cme_pipeline.progress import say
from cme_pipeline.runs import LaOutcome, la_outcome, waiting_deliveries


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme run``."""
    p = sub.add_parser("run", help="run cme_matching now on every waiting delivery")
    p.add_argument("--la", required=True, help="CODE[,CODE..] or all")
    p.add_argument("--year", type=int, help="academic year start (default: current)")
    p.add_argument("--match-threshold", type=float)
    p.add_argument("--possible-threshold", type=float)
    p.add_argument("--no-cross-la", action="store_true",
                   help="skip the cross-LA check that follows the runs (docs/cross-la.md)")
    p.add_argument("--workers", type=int, help="LAs run in parallel in this many processes "
                                                "(default: one per usable core)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run until every waiting delivery of the chosen LAs is processed or rejected."""
    codes = parse_la_codes(args.la)
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    check_thresholds(  # refuse a destructive typo before anything is opened
        settings.match_threshold if args.match_threshold is None else args.match_threshold,
        settings.possible_threshold if args.possible_threshold is None else args.possible_threshold,
    )
    conf: dict[str, object] = {"academic_year": args.year}
    if args.match_threshold is not None:
        conf["match_threshold"] = args.match_threshold
    if args.possible_threshold is not None:
        conf["possible_threshold"] = args.possible_threshold
    with home_lock(settings):
        code = run_waiting(settings, codes, conf, workers=args.workers)
        if not args.no_cross_la:
            _cross_la(settings, codes)
        return code


def _cross_la(settings: Settings, codes: list[str]) -> None:
    """After every chosen LA's run: their unmatched children looked for on the other LAs' registers."""
    from cme_pipeline.pipeline.cross_la import run_check

    start = time.monotonic()
    results = run_check(settings, codes)
    for code, r in results.items():
        where = ", ".join(f"{other}: {n}" for other, n in r["found_in"].items()) or "none"
        maybe = sum(r["possible_in"].values())
        moved = sum(r.get("moved_to", {}).values())
        say(f"  cross-LA check {code}: {r['checked']} unmatched looked for, {r['removed']} removed: found on another "
            f"LA's register ({where}) or moved to another LA ({moved}); {maybe} noted as possibly on one")
    if results:
        say(f"cross-LA check of {len(results)} LA(s) in {time.monotonic() - start:.0f}s")


def run_waiting(settings: Settings, codes: list[str], conf: dict[str, object], workers: int | None = None) -> int:
    """Run ``cme_matching`` until no chosen LA has a delivery waiting; print the summary.

    The caller holds the home lock. Returns 0, or raises (exit 3) after one stderr line per LA
    whose delivery was rejected or whose run failed; the other LAs are processed regardless.

    Args:
        settings: the home.
        codes: the LAs to look at.
        conf: the run's Params other than ``la_codes``.
        workers: how many LAs run at once, each share of them in its own forked process and
            ``cme_matching`` run (default: one per usable core; 1 runs everything in this process).
    """
    from cme_pipeline import embedded_airflow, embedded_workers

    pending = [c for c in codes if waiting_deliveries(settings, c)]
    if not pending:
        sys.stdout.write("no delivery waiting for the chosen LA(s); nothing to do\n")
        return 0
    pending, stale = _fresh_enough(settings, pending)
    if not pending:
        raise _Quiet(exit_code=4)
    say(f"preparing Airflow under {settings.airflow_home} (its own output: "
        f"{embedded_airflow.console_log(settings)})")
    with embedded_airflow.airflow_console_to_file(settings):
        embedded_airflow.prepare(settings)
    workers = workers or embedded_workers.usable_cores()
    outcomes: list[LaOutcome] = []
    while pending:
        start = time.monotonic()
        shares = embedded_workers.split_by_size(settings, pending, workers)
        say(f"running cme_matching for {len(pending)} LA(s) in {len(shares)} process(es): {', '.join(pending)}")
        with embedded_airflow.airflow_console_to_file(settings):
            results = _run_shares(settings, conf, shares)
        for share in results:
            for code in share.la_codes:
                outcome = (la_outcome(settings, code, share.result.run_id) if share.result else
                           LaOutcome(la_code=code, status="failed", reason=share.problem))
                outcomes.append(outcome)
                say(f"  {outcome.line()}")
            if share.result:
                say(f"run {share.result.run_id} {share.result.state} in {time.monotonic() - start:.0f}s")
        # An LA whose run failed (not a rejection) keeps its delivery in the inbox: do not loop.
        failed = {o.la_code for o in outcomes if o.status == "failed"}
        pending = [c for c in pending if c not in failed and waiting_deliveries(settings, c)]
    _print_summary(outcomes)
    _print_receipt_requests(settings, codes)
    problems = [o for o in outcomes if o.status != "completed"]
    for o in problems:
        sys.stderr.write(f"cme run: {o.line()}\n")
    if problems:
        raise _Quiet(exit_code=3)
    if stale:
        sys.stderr.write(f"cme run: not run, registers too old: {', '.join(stale)}\n")
        raise _Quiet(exit_code=4)
    return 0


def _run_shares(settings: Settings, conf: dict[str, object], shares: list[list[str]]) -> list[ShareResult]:
    """One ``cme_matching`` run per share: in this process for one share, else in forked workers."""
    from cme_pipeline import embedded_airflow, embedded_workers

    if len(shares) == 1:
        return [ShareResult(tuple(shares[0]), embedded_airflow.run_dag(settings, "cme_matching",
                                                                       conf | {"la_codes": shares[0]}))]
    embedded_workers.warm_up()
    return embedded_workers.run_shares(settings, "cme_matching", conf, shares)


def _fresh_enough(settings: Settings, codes: list[str]) -> tuple[list[str], list[str]]:
    """Warn about old registers and hold back LAs whose registers a run must refuse.

    Printed before anything is opened; a held-back LA's delivery stays in its inbox, encrypted.
    """
    import datetime as dt

    from cme_pipeline.home import open_home
    from cme_pipeline.la.register_freshness import check_freshness

    ready: list[str] = []
    stale: list[str] = []
    for code in codes:
        fresh = check_freshness(open_home(settings), code, dt.date.today())
        for line in fresh.warnings:
            sys.stderr.write(f"cme run: warning: {line}\n")
        for line in fresh.refusals:
            sys.stderr.write(f"cme run: refused: {line}\n")
        (stale if fresh.refusals else ready).append(code)
    return ready, stale


def _print_summary(outcomes: list[LaOutcome]) -> None:
    out = sys.stdout
    out.write(f"{'LA':<10} {'delivery':<34} {'received':>9} {'matched':>8} {'possible':>9} {'retained':>9}  status\n")
    for o in outcomes:
        out.write(
            f"{o.la_code:<10} {o.delivery_id:<34} {o.received:>9} {o.matched:>8} {o.possible:>9} "
            f"{o.retained:>9}  {o.status}\n"
        )
        if o.report:
            out.write(f"{'':<10} report: {o.report}\n")


def _print_receipt_requests(settings: Settings, codes: list[str]) -> None:
    """How many checkpoints wait for the NHS partner's witness (nothing when none waits)."""
    from cme_pipeline.evidence.witness import waiting_requests

    waiting = {code: len(waiting_requests(settings, code)) for code in codes}
    if sum(waiting.values()):
        each = ", ".join(f"{code}: {n}" for code, n in waiting.items() if n)
        sys.stdout.write(f"receipt requests waiting for the NHS partner's witness: {sum(waiting.values())} "
                         f"({each}); the partner answers them with `cme partner witness`\n")


class _Quiet(CmeError):
    """Problems were already printed, one line each; exit non-zero without another line."""

    def __init__(self, exit_code: int) -> None:
        super().__init__("")
        self.exit_code = exit_code
