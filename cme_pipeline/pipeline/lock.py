"""One pipeline run per home at a time: a second `cme run` refuses clearly instead of racing."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from cme_pipeline.config import Settings
from cme_pipeline.errors import CmeError


class HomeBusy(CmeError):
    """Another run holds the home's lock."""

    exit_code = 4


def _acquire(settings: Settings) -> int:
    settings.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.home / ".run.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise HomeBusy(
            f"another cme run (or cme airflow) is processing {settings.home}; try again when it ends"
        ) from None
    return fd


@contextmanager
def home_lock(settings: Settings) -> Iterator[None]:
    """Hold the home's run lock for the duration; refuse at once if another run holds it.

    Args:
        settings: the home to lock.
    """
    fd = _acquire(settings)
    try:
        yield
    finally:
        os.close(fd)

