"""``cme sar``: answer a subject access request about a child's health data, honestly."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import secrets
import sys
from pathlib import Path

from cme_pipeline.config import Settings
from cme_pipeline.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme sar``."""
    p = sub.add_parser(
        "sar", help="answer a subject access request about a child's health data",
        description="The child's details are read from --request (a file, or - for stdin), never from "
                    "the command line, which shell history and ps keep.",
    )
    p.add_argument("--la", required=True, help="the LA's ONS code")
    p.add_argument("--request", required=True,
                   help="file of nhs_number = ..., or forename, surname, dob (YYYY-MM-DD) and postcode; - for stdin")
    p.add_argument("--out", required=True, type=Path, help="the answer to write (Markdown, mode 0600), outside the home")
    p.set_defaults(handler=run_sar)


def run_sar(args: argparse.Namespace, settings: Settings) -> int:
    """Write the answer; record the request in the ledger (no details); print the path and held/not held."""
    from cme_pipeline import durable, evidence
    from cme_pipeline.commands.review import one_la
    from cme_pipeline.evidence.ledger import SAR_RUN_PREFIX
    from cme_pipeline.home import open_home
    from cme_pipeline.la.subject_access import answer, read_request

    la_code = one_la(args.la)
    out = _answer_path(args.out, settings)
    request = read_request(args.request)
    home = open_home(settings)
    result = answer(home, la_code, request, dt.date.today())
    body = result.text.encode("utf-8")
    try:
        durable.write_atomic(out, body, exclusive=True)
    except FileExistsError:
        raise UsageError("the --out file exists; an earlier answer is never replaced, choose another path") from None
    # An officer's action, not an Airflow run: its own run id (random tail: two answers in one second
    # with the same text are two requests, not a retry), recorded and checkpointed at once.
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    evidence.record(settings, la_code, f"{SAR_RUN_PREFIX}{now}-{secrets.token_hex(3)}", "subject_access", {
        "held": result.held, "route": result.route, "answer_sha256": hashlib.sha256(body).hexdigest(),
    })
    evidence.checkpoint(settings, home.keys, la_code)
    sys.stdout.write(f"{out}: {'held' if result.held else 'not held'}\n")
    return 0


def _answer_path(out: Path, settings: Settings) -> Path:
    """The answer's path, refused inside the home: it holds the child's details in plain text, and
    the home is backed up and copied with the pipeline's data, where deletion could not reach it."""
    target = out.expanduser().resolve()
    home = settings.home.resolve()
    if target == home or home in target.parents:
        raise UsageError("write the --out answer outside the home (the home is backed up with the pipeline's data)")
    if target.is_dir():
        raise UsageError("--out is a directory; give the answer file's path")
    return target
