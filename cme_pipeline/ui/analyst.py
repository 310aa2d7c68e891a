"""The analyst's page: per LA the review queue, what is held and when it expires, follow-up figures.

Counts only, from count queries (``store.retained_counts``) and ``la.follow_up.figures``: no row
of the retained table is read or decrypted to draw this page.
"""

from __future__ import annotations

import datetime as dt

from cme_pipeline.config import Settings
from cme_pipeline.evidence.verify import evidence_las
from cme_pipeline.home import Home
from cme_pipeline.la.follow_up import figures
from cme_pipeline.store.retained_counts import RetainedCounts, retained_counts
from cme_pipeline.ui.html import cells, esc, page, table

WINDOWS = ((7, "within 7 days"), (30, "within 30 days"), (90, "within 90 days"))


def las_with_store(settings: Settings) -> list[str]:
    """LAs with evidence whose store exists (an embedded SQLite file is never created by a look)."""
    return [la for la in evidence_las(settings)
            if settings.database_url or (settings.store_dir(la) / "cme.sqlite").is_file()]


def render(home: Home, today: dt.date) -> str:
    """``/analyst``: every LA's counts on ``today``.

    Args:
        home: the LA services (store engines).
        today: the day retention is judged by.
    """
    body = [f"<p>Counts on {esc(today.isoformat())}: the clerical review queue, the children held and when "
            "their retention ends, and what follow-up has found. Open <code>cme review export</code> or "
            "<code>cme retained list</code> for the records themselves.</p>"]
    las = las_with_store(home.settings)
    if not las:
        body.append('<p class="muted">No LA has a store with retained children yet.</p>')
    for la_code in las:
        with home.store(la_code).connect() as conn:
            counts = retained_counts(conn, la_code, today)
        body.append(f"<h2>{esc(la_code)}</h2>")
        body.append(_held(counts, today))
        body.append(_follow_up(home, la_code, today))
    return page("Analyst: review queue and retention", "".join(body))


def _held(counts: RetainedCounts, today: dt.date) -> str:
    rows = [cells("awaiting clerical review (possible matches)", counts.awaiting_review)]
    rows += [cells(f"held: {outcome}", n) for outcome, n in counts.by_outcome.items()]
    rows.append(cells("held in all", counts.held))
    for days, label in WINDOWS:
        until = today + dt.timedelta(days=days)
        rows.append(cells(f"retention ends {label}", sum(n for d, n in counts.by_expiry.items() if d <= until)))
    rows.append(cells("past retention, awaiting the daily purge", counts.past_expiry))
    by_month: dict[str, int] = {}
    for day, n in counts.by_expiry.items():
        by_month[day.strftime("%Y-%m")] = by_month.get(day.strftime("%Y-%m"), 0) + n
    months = table(["retention ends in", "children"], [cells(m, n) for m, n in sorted(by_month.items())],
                   numeric=frozenset({1}))
    return table(["", "children"], rows, numeric=frozenset({1})) + months


def _follow_up(home: Home, la_code: str, today: dt.date) -> str:
    f = figures(home, la_code, today)
    rows = [cells("resolved in all", f.resolved)]
    rows += [cells(f"resolved: {outcome}", n) for outcome, n in f.resolved_by_outcome.items()]
    rows += [cells("median school days to resolve", "" if f.median_school_days is None else f"{f.median_school_days:g}"),
             cells("resolved within the initial check", f.within_initial_check),
             cells("still under enquiry", f.under_enquiry)]
    rows += [cells(f"held for {band}", n) for band, n in f.held_by_age.items()]
    return "<h3>Follow-up</h3>" + table(["", "children"], rows, numeric=frozenset({1}))
