"""`cme run` without Airflow work: nothing waiting, and two runs on one home at once."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from cme_pipeline.cli import main
from cme_pipeline.config import load_settings
from cme_pipeline.pipeline.lock import HomeBusy, home_lock


def test_nothing_waiting_is_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(tmp_path), "run", "--la", "W06000015"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_a_second_run_on_the_same_home_refuses_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(tmp_path, environ={})
    (settings.inbox("W06000015")).mkdir(parents=True)
    (settings.inbox("W06000015") / "D20261001-W06000015-00000000.cmedelivery").write_bytes(b"x")
    # Another process holds the lock (flock locks belong to the open file description).
    fd = os.open(tmp_path / ".run.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert main(["--home", str(tmp_path), "run", "--la", "W06000015"]) == HomeBusy.exit_code
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another cme run is processing" in err[0]
    # The delivery was not touched.
    assert (settings.inbox("W06000015") / "D20261001-W06000015-00000000.cmedelivery").read_bytes() == b"x"


def test_lock_is_released_after_use(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    with home_lock(settings):
        pass
    with home_lock(settings):
        pass
