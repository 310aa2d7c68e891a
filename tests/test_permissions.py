"""Nobody else on the machine can read the home: 0700 directories and 0600 files whatever the
umask, Airflow's own files included, and a home an earlier version left open is closed at start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

LA = "W06000015"


def _loose(root: Path) -> list[str]:
    """Paths under ``root`` that group or others could read, write or enter."""
    return [
        f"{p.relative_to(root)} {oct(p.stat().st_mode & 0o777)}"
        for p in (root, *root.rglob("*"))
        if not p.is_symlink() and p.stat().st_mode & 0o077
    ]


def _cme(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CME_KEYSTORE", "CME_DATABASE_URL", "CME_HOME")}
    return subprocess.run(
        [sys.executable, "-m", "cme_pipeline.cli", "--home", str(home), *args],
        capture_output=True, text=True, env=env, check=False,
        preexec_fn=lambda: os.umask(0o022),  # noqa: PLW1509 - the usual, permissive umask
    )


def test_a_whole_run_under_umask_022_leaves_nothing_readable_by_others(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _cme(home, "simulate", "--la", LA, "--children", "300", "--seed", "3").returncode == 0
    done = _cme(home, "run", "--la", LA)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (home / "airflow" / "airflow.db").is_file() and list((home / "airflow" / "logs").rglob("*.log"))
    assert _loose(home) == []
    assert _loose(tmp_path / "home.keys") == []


def test_a_home_left_open_by_an_earlier_version_is_closed_at_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    registers = home / "la" / LA / "store"
    registers.mkdir(parents=True)
    (registers / "cme.sqlite").write_bytes(b"")
    for path in (home, home / "la", home / "la" / LA, registers):
        path.chmod(0o755)
    (registers / "cme.sqlite").chmod(0o644)
    assert _cme(home, "audit", "runs").returncode == 0  # any command closes it first
    assert _loose(home) == []
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
