"""PII-free outcomes of a suite run, and the typed errors a failed gate raises.

Only names, columns, counts and row numbers are ever copied out of a Great Expectations result:
never an unexpected value, a partial list, an exception message or a traceback (those can hold
the value that failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cme_pipeline.errors import CmeError, DeliveryRejected

MAX_ROWS_NAMED = 5  # row numbers named in a message; the count says how many more


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict: which check, on which column, how many rows failed."""

    name: str  # the suite's own id for the check, e.g. ``nhs_number_check_digit``
    expectation: str  # the GX expectation type
    column: str | None
    success: bool
    explain: str
    unexpected_count: int | None = None  # rows that failed (map expectations only)
    element_count: int | None = None
    rows: tuple[int, ...] = ()  # the first failing row numbers (1-based), never values
    error: bool = False  # the check could not be evaluated (its exception is not kept)
    observed: int | None = None  # a table-level count (rows), never a column value
    expected: int | None = None

    def facts(self) -> dict[str, Any]:
        """Names and counts for the evidence ledger (no row numbers, no values)."""
        out: dict[str, Any] = {"name": self.name, "expectation": self.expectation, "success": self.success}
        if self.column is not None:
            out["column"] = self.column
        if self.unexpected_count is not None:
            out["unexpected_count"] = self.unexpected_count
        if self.error:
            out["error"] = True
        if self.observed is not None:
            out["observed"] = self.observed
        return out

    def describe(self) -> str:
        """A short clause for a one-line message: check, column, rows."""
        where = f" in column {self.column}" if self.column else ""
        text = f"{self.name}{where}"
        if self.error:
            return f"{text} could not be evaluated"
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:MAX_ROWS_NAMED])
            total = self.unexpected_count if self.unexpected_count is not None else len(self.rows)
            more = total - min(len(self.rows), MAX_ROWS_NAMED)
            rows = f"row {shown}" if total == 1 else f"rows {shown}" + (f" and {more} more" if more > 0 else "")
            return f"{text} at {rows} ({self.explain.rstrip('.')})"
        if self.observed is not None and self.expected is not None:
            return f"{text}: {self.observed} records, expected {self.expected} ({self.explain.rstrip('.')})"
        return f"{text} ({self.explain.rstrip('.')})"


@dataclass(frozen=True)
class SuiteOutcome:
    """The verdict of one suite on one subject (a delivery, a register, the retained set)."""

    suite: str
    subject: str
    success: bool
    rows_checked: int
    expectations: tuple[ExpectationOutcome, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> tuple[ExpectationOutcome, ...]:
        """The expectations that failed, in suite order."""
        return tuple(e for e in self.expectations if not e.success)

    def facts(self) -> dict[str, Any]:
        """A PII-free summary for the ledger and the evidence report."""
        return {
            "suite": self.suite,
            "subject": self.subject,
            "success": self.success,
            "rows_checked": self.rows_checked,
            "expectations_evaluated": len(self.expectations),
            "failed": [e.facts() for e in self.failed],
            "results": [e.facts() for e in self.expectations],
        }

    def message(self) -> str:
        """One line: the suite, the first failing check with its column and rows, the others."""
        failed = self.failed
        if not failed:
            return f"suite {self.suite} passed on {self.subject}"
        head = f"suite {self.suite} failed on {self.subject}: {failed[0].describe()}"
        if len(failed) > 1:
            others = ", ".join(
                e.name + (f" ({_rows(e.unexpected_count)})" if e.unexpected_count else "") for e in failed[1:]
            )
            head += f"; also failed: {others}"
        return head


def _rows(n: int) -> str:
    return "1 row" if n == 1 else f"{n} rows"


def facts(outcome: SuiteOutcome) -> dict[str, Any]:
    """PII-free facts of a suite outcome, for the evidence ledger.

    Args:
        outcome: what a suite run returned.
    """
    return outcome.facts()


class QualityGateFailed(CmeError):
    """A Great Expectations gate after the delivery failed: the run stops, nothing is retained."""

    exit_code = 4

    def __init__(self, outcome: SuiteOutcome) -> None:
        super().__init__(outcome.message())
        self.outcome = outcome
        self.check = f"suite:{outcome.suite}"
        self.details = outcome.facts()


class DeliveryInvalid(DeliveryRejected):
    """The delivery suite (or the strict parse before it) failed; the delivery is quarantined.

    ``details`` holds the suite name, the failed checks' names and counts: PII-free by
    construction, for the evidence ledger.
    """

    def __init__(self, reason: str, *, check: str, details: dict[str, Any]) -> None:
        super().__init__(reason, check=check)
        self.details = details
