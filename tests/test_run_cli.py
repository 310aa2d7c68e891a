"""`cme run` and the home lock: nothing waiting, two runs on one home at once, Airflow beside a run.

Runs on the ``file:`` key store only: what is tested is the home lock, which `cme run` takes
before it opens any key, and the finding that nothing waits, which opens none; the key-store work
of a `cme run` runs on a SoftHSM2 token in test_pipeline_e2e.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cme_pipeline.cli import main
from cme_pipeline.config import load_settings
from cme_pipeline.evidence import ledger
from cme_pipeline.pipeline.lock import HomeBusy, home_lock
from cme_pipeline.simulate.wales import simulate_to_home


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
    assert len(err) == 1 and "another cme run (or cme airflow) is processing" in err[0]
    # The delivery was not touched.
    assert (settings.inbox("W06000015") / "D20261001-W06000015-00000000.cmedelivery").read_bytes() == b"x"


def test_lock_is_released_after_use(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    with home_lock(settings):
        pass
    with home_lock(settings):
        pass


@pytest.mark.airflow
def test_two_cme_runs_at_once_process_the_delivery_once(tmp_path: Path) -> None:
    la = "W06000015"
    settings = load_settings(tmp_path / "home", environ={})
    simulate_to_home(settings, [la], children=300, seed=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CME_", "AIRFLOW"))}
    command = [sys.executable, "-m", "cme_pipeline.cli", "--home", str(settings.home), "run", "--la", la]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    done = [(p.wait(), *p.communicate()) for p in runs]
    codes = sorted(code for code, _, _ in done)
    # One processed the delivery; the other refused (or, had it started later, found nothing).
    assert codes in ([0, HomeBusy.exit_code], [0, 0]), [err[-500:] for _, _, err in done]
    if codes == [0, HomeBusy.exit_code]:
        refused = next(err for code, _, err in done if code == HomeBusy.exit_code)
        assert refused.strip().splitlines() == [
            f"cme run: another cme run (or cme airflow) is processing {settings.home}; try again when it ends"
        ]
    else:
        assert sum("nothing to do" in out for _, out, _ in done) == 1
    runs_dir = settings.store_dir(la) / "runs"
    assert len(list(runs_dir.iterdir())) == 1
    state = json.loads(next(runs_dir.iterdir()).joinpath("state.json").read_text())
    assert state.get("completed") is True
    received = [e for e in ledger.read_entries(settings, la) if e["event"] == "delivery_received"]
    assert len(received) == 1
