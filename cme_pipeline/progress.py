"""Progress lines for long work, on stderr. Counts and stage names only, never values."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def say(message: str) -> None:
    """Write one progress line to stderr."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def track(items: Iterable[T], total: int, label: str, every: float = 1.0) -> Iterator[T]:
    """Yield ``items`` while drawing a one-line progress bar on stderr.

    Args:
        items: what to iterate.
        total: how many items there are.
        label: what is being done, e.g. ``"linking"``.
        every: seconds between redraws.
    """
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every or done == total:
            last = now
            width = 30
            filled = int(width * done / max(total, 1))
            sys.stderr.write(
                f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {now - start:.0f}s"
            )
            sys.stderr.flush()
    sys.stderr.write("\n")
