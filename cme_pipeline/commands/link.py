"""``cme link``: link two files in canonical person columns and write scored pairs."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cme_pipeline.config import Settings
from cme_pipeline.errors import UsageError
from cme_pipeline.progress import say
from cme_pipeline.schemas import CANONICAL_PERSON

if TYPE_CHECKING:
    from cme_pipeline.matching import LinkConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme link``."""
    p = sub.add_parser("link", help="link two canonical-person CSV files")
    p.add_argument("left", type=Path, help="LEFT.csv in canonical person columns")
    p.add_argument("right", type=Path, help="RIGHT.csv in canonical person columns")
    p.add_argument("--out", type=Path, help="PAIRS.csv to write (required unless --explain)")
    p.add_argument("--explain", nargs=2, metavar=("LEFT_ID", "RIGHT_ID"),
                   help="print the per-field weights of one pair instead of linking")
    p.add_argument("--match-threshold", type=float, help="match band from this probability")
    p.add_argument("--possible-threshold", type=float, help="possible band from this probability")
    p.add_argument(
        "--profile", choices=("general", "children"), default="general",
        help="general (default): any person files, adults too, heavily corrupted; "
             "children: the pipeline's own settings for children against LA registers",
    )
    p.set_defaults(handler=run)


def read_people(path: Path, side: str) -> pd.DataFrame:
    """Read a canonical-person CSV as strings; missing columns are tolerated, ``record_id`` not.

    Args:
        path: the file.
        side: "LEFT" or "RIGHT", for messages (which never quote a value).
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{side} file not found: {path}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise UsageError(f"{side} file is not a readable UTF-8 CSV: {path}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    # "Forename" and "forename" meet once lower-cased; pandas renames an exact repeat "forename.1".
    heads = [re.sub(r"\.\d+$", "", c) for c in frame.columns]
    repeated = [c for c in CANONICAL_PERSON if heads.count(c) > 1]
    if repeated:
        raise UsageError(f"{side} file repeats the column(s) {', '.join(repeated)}")
    if "record_id" not in frame.columns:
        raise UsageError(f"{side} file has no record_id column")
    blank = frame["record_id"].str.strip() == ""
    if blank.any():
        raise UsageError(f"{side} file has an empty record_id on row {int(blank.to_numpy().argmax()) + 2}")
    dup = frame["record_id"].duplicated()
    if dup.any():
        raise UsageError(f"{side} file repeats a record_id on row {int(dup.to_numpy().argmax()) + 2}")
    return frame[[c for c in frame.columns if c in CANONICAL_PERSON]]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Link, write the pairs, and print counts (never values)."""
    from cme_pipeline.matching import LinkConfig, link  # heavy imports only when used

    match = settings.match_threshold if args.match_threshold is None else args.match_threshold
    possible = settings.possible_threshold if args.possible_threshold is None else args.possible_threshold
    from cme_pipeline.matching.general import U_SAMPLE

    u_sample = U_SAMPLE if args.profile == "general" else LinkConfig.u_sample
    try:
        config = LinkConfig(
            match_threshold=match, possible_threshold=possible, profile=args.profile, u_sample=u_sample
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.out is None and args.explain is None:
        raise UsageError("give --out PAIRS.csv, or --explain LEFT_ID RIGHT_ID")
    start = time.monotonic()
    left, right = read_people(args.left, "LEFT"), read_people(args.right, "RIGHT")
    if args.explain is not None:
        return _explain(left, right, args.explain[0], args.explain[1], config)
    for side, frame in (("LEFT", left), ("RIGHT", right)):
        absent = [c for c in CANONICAL_PERSON if c not in frame.columns]
        if absent:
            say(f"{side} has no {', '.join(absent)} column(s): treated as missing")
    pairs = link(left, right, config, progress=True)
    _write_atomically(pairs, args.out)
    counts = pairs["band"].value_counts()
    sys.stdout.write(
        f"linked {len(left)} x {len(right)} records: {int(counts.get('match', 0))} match, "
        f"{int(counts.get('possible', 0))} possible pairs -> {args.out} "
        f"({time.monotonic() - start:.1f}s)\n"
    )
    return 0


def _explain(left: pd.DataFrame, right: pd.DataFrame, left_id: str, right_id: str, config: LinkConfig) -> int:
    """Print one pair's comparison levels and weights (bits): names of levels, never values."""
    from cme_pipeline.matching import explain

    try:
        table = explain(left, right, left_id, right_id, config)
    except KeyError as exc:
        raise UsageError(f"{exc.args[0]} (--explain)") from None
    lines = [f"{'comparison':12s} {'level':26s} {'weight (bits)':>13s}"]
    for row in table.itertuples(index=False):
        lines.append(f"{row.comparison:12s} {row.level:26s} {row.weight:13.2f}")
    total = table.iloc[-1]
    lines.append(f"probability {float(total['probability']):.6f} (match from {config.match_threshold}, "
                 f"possible from {config.possible_threshold})")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _write_atomically(pairs: pd.DataFrame, out: Path) -> None:
    """Write under a temporary name beside ``out``, then rename: a full disk or a kill mid-write
    leaves no half a pairs file that could be taken for the whole."""
    from cme_pipeline.durable import write_atomic

    try:
        write_atomic(out, pairs.to_csv(index=False, float_format="%.6f").encode())
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None
