"""Whether an LA's registers are recent enough to match against.

A register taken long before the health extract misses every child who joined a school, EOTAS
or EHE since: they come out ``unmatched`` and their health data is kept for follow-up. So a run
warns past ``register_warn_days`` and refuses past ``register_max_days`` (DESIGN.md §3), and a
register never loaded at all (rather than loaded empty) is refused too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cme_pipeline.errors import CmeError
from cme_pipeline.home import Home
from cme_pipeline.schemas import REGISTER_SOURCES


class RegistersStale(CmeError):
    """A register is too old (or was never loaded); the LA's delivery waits for a fresh one."""

    exit_code = 4


@dataclass(frozen=True)
class Freshness:
    """Warnings (old but usable) and refusals (too old or missing), one line each."""

    la_code: str
    warnings: tuple[str, ...]
    refusals: tuple[str, ...]

    def raise_if_refused(self) -> None:
        """Raise ``RegistersStale`` naming the first refusal (and how many more)."""
        if self.refusals:
            more = f" (and {len(self.refusals) - 1} more)" if len(self.refusals) > 1 else ""
            raise RegistersStale(self.refusals[0] + more)


def check_freshness(home: Home, la_code: str, today: dt.date) -> Freshness:
    """How old each of the LA's registers is against the configured limits.

    Args:
        home: the composition root.
        la_code: the LA.
        today: the day of the run.
    """
    from cme_pipeline.store import register_loads_of

    settings = home.settings
    loads = register_loads_of(home.store(la_code), la_code)
    warnings: list[str] = []
    refusals: list[str] = []
    for source in REGISTER_SOURCES:
        load = loads.get(source)
        if load is None:
            refusals.append(f"LA {la_code}: the {source} register was never loaded; import it with "
                            f"`cme registers import --la {la_code} --register {source} FILE` (an export with "
                            "only its headings if the LA has no such children)")
            continue
        age = (today - load.as_of).days
        said = f"LA {la_code}: the {source} register was taken on {load.as_of.isoformat()}, {age} days ago"
        if age > settings.register_max_days:
            refusals.append(f"{said}, past the {settings.register_max_days}-day limit; import a fresh export "
                            "before matching (registered children would be sent to follow-up)")
        elif age > settings.register_warn_days:
            warnings.append(f"{said} (more than {settings.register_warn_days}); children who joined since "
                            "will be sent to follow-up")
    return Freshness(la_code, tuple(warnings), tuple(refusals))
