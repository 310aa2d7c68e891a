"""The ``cme`` command (DESIGN.md §8). Expected failures print one line and exit non-zero."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.errors import CmeError

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="cme",
        description="Find children who may be missing education; keep nothing about the others.",
    )
    parser.add_argument("--home", help="state directory (default: $CME_HOME or ./var)")
    sub = parser.add_subparsers(dest="command", required=True)
    from cme_pipeline import commands

    commands.register_all(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cme`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.home)
        from cme_pipeline.home import secure_process

        secure_process(settings)  # before anything, Airflow included, writes a file
        handler: Handler = args.handler
        return handler(args, settings)
    except CmeError as exc:
        if str(exc):
            sys.stderr.write(f"cme {args.command}: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"cme {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
