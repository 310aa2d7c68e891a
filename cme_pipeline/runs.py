"""Run bookkeeping: per-run state of one LA (a small JSON of ids and counts), the deliveries
waiting in its inbox, and what one LA's part of a run came to.

Each task of a run reads and writes only its run's partition (``store/runs/<run>/``), so a retry
of any task gives the same result. Below ``evidence/`` and ``quality/``, which file by run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cme_pipeline.config import Settings
from cme_pipeline.crypto import DELIVERY_SUFFIX
from cme_pipeline.durable import write_atomic


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
    def claims_file(self) -> Path:
        """Every register record a matched child matched (ids only), sealed like the outcomes."""
        return self.directory / "claims.sealed"

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
    write_atomic(paths.state_file, json.dumps(state, sort_keys=True, indent=1).encode())
    return state


def waiting_deliveries(settings: Settings, la_code: str) -> list[Path]:
    """Deliveries in the LA's inbox, oldest first (by name, which starts with the extract date)."""
    inbox = settings.inbox(la_code)
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if p.name.endswith(DELIVERY_SUFFIX) and not p.name.startswith("."))


@dataclass(frozen=True)
class LaOutcome:
    """Counts and status of one LA in one run."""

    la_code: str
    status: str  # completed | rejected | failed
    delivery_id: str = "-"
    received: int = 0
    matched: int = 0
    possible: int = 0
    retained: int = 0
    report: str = ""
    reason: str = ""

    def line(self) -> str:
        """One line for the console; ids, counts and reasons only."""
        if self.status == "completed":
            return (
                f"{self.la_code}: {self.received} received, {self.matched} matched and deleted, "
                f"{self.possible} for review, {self.retained} retained"
            )
        if self.status == "rejected":
            return f"{self.la_code}: delivery {self.delivery_id} rejected and quarantined: {self.reason}"
        return f"{self.la_code}: run failed, nothing retained, delivery kept encrypted: {self.reason}"


def la_outcome(settings: Settings, la_code: str, run_id: str) -> LaOutcome:
    """Read one LA's outcome of a run from its state file.

    Args:
        settings: the home.
        la_code: the LA.
        run_id: the Airflow run id.
    """
    state = read_state(RunPaths(settings, la_code, run_id))
    if state.get("completed"):
        status = "completed"
    elif "rejected" in state:
        status = "rejected"
    else:
        status = "failed"
    return LaOutcome(
        la_code=la_code,
        status=status,
        delivery_id=str(state.get("delivery_id") or state.get("delivery_file", "-")).removesuffix(".cmedelivery"),
        received=int(state.get("received", 0)),
        matched=int(state.get("matched", 0)),
        possible=int(state.get("possible", 0)),
        retained=int(state.get("retained", 0)),
        report=str(state.get("report", "")),
        reason=str(state.get("rejected") or state.get("failure", "no step recorded an outcome")),
    )
