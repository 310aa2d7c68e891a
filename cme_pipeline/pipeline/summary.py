"""What one LA's part of a run came to, read from the run's state (ids and counts only)."""

from __future__ import annotations

from dataclasses import dataclass

from cme_pipeline.config import Settings
from cme_pipeline.pipeline.runs import RunPaths, read_state


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
