"""Per-run state of one LA: a small JSON of ids and counts, and the delivery being processed.

Each task of a run reads and writes only its run's partition (``store/runs/<run>/``), so a retry
of any task gives the same result.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cme_pipeline.config import Settings
from cme_pipeline.crypto import DELIVERY_SUFFIX


def run_key(run_id: str) -> str:
    """A file-name-safe key for an Airflow run id (which holds ':' and '+')."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{safe[:80]}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class RunPaths:
    """Where one LA's run keeps its partition."""

    settings: Settings
    la_code: str
    run_id: str

    @property
    def directory(self) -> Path:
        """The run's own directory under the LA store."""
        return self.settings.store_dir(self.la_code) / "runs" / run_key(self.run_id)

    @property
    def state_file(self) -> Path:
        """Ids and counts the run has established so far."""
        return self.directory / "state.json"

    @property
    def outcomes_file(self) -> Path:
        """Match outcomes, sealed under the run's scratch key."""
        return self.directory / "outcomes.sealed"

    @property
    def scratch_key(self) -> str:
        """Key-store name of the run's scratch key."""
        return f"la/{self.la_code}/runs/{run_key(self.run_id)}"


def read_state(paths: RunPaths) -> dict[str, Any]:
    """The run's state so far (empty for a new run)."""
    try:
        state: dict[str, Any] = json.loads(paths.state_file.read_text())
    except FileNotFoundError:
        return {}
    return state


def update_state(paths: RunPaths, **values: Any) -> dict[str, Any]:
    """Merge ids/counts into the run's state, atomically; return the new state."""
    state = read_state(paths) | values
    paths.directory.mkdir(parents=True, exist_ok=True)
    tmp = paths.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True, indent=1))
    os.replace(tmp, paths.state_file)
    return state


def waiting_deliveries(settings: Settings, la_code: str) -> list[Path]:
    """Deliveries in the LA's inbox, oldest first (by name, which starts with the extract date)."""
    inbox = settings.inbox(la_code)
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if p.name.endswith(DELIVERY_SUFFIX) and not p.name.startswith("."))


def shred_file(path: Path) -> bool:
    """Overwrite a file with random bytes, sync and unlink it; True if it existed.

    The processed delivery is encrypted to the LA's long-term receiving key, so keeping it would
    undo crypto-shredding of the per-delivery data key: it must go once the run has finished.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    with open(path, "r+b", buffering=0) as fh:
        remaining = size
        while remaining > 0:
            chunk = min(remaining, 1 << 20)
            fh.write(os.urandom(chunk))
            remaining -= chunk
        os.fsync(fh.fileno())
    path.unlink()
    return True
