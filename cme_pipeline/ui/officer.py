"""The CME officer's page: the refs of the children held per LA, and a form for what each enquiry found.

No personal data: a child is a ref (``delivery_id/health_record_id``) with the outcome that kept
them (unmatched or possible), the end of their retention and the officer's latest note, read from
plain columns (``follow_up.held``); nothing is decrypted to draw the page. The officer identifies
the child with ``cme retained list`` in their terminal. Findings go through the same two calls as
``cme retained resolve``: ``follow_up.resolve`` (all or nothing), then ``follow_up.record_findings``
(the ledger entry and a signed checkpoint).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import zip_longest

from cme_pipeline.errors import CmeError, UsageError
from cme_pipeline.home import Home
from cme_pipeline.la.follow_up import (
    OUTCOMES,
    FollowUpResult,
    held,
    note_label,
    parse_decisions,
    record_findings,
    resolve,
)
from cme_pipeline.ui.analyst import las_with_store
from cme_pipeline.ui.html import cells, esc, page, table

TITLE = "CME officer: follow-up findings"
ROWS = 5  # empty decision rows per form; more at once go in the pasted CSV
PASTED = "the pasted CSV"


@dataclass(frozen=True)
class Filled:
    """What the officer sent for one LA, shown again in the form when it was refused."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    csv: str = ""


@dataclass(frozen=True)
class Answer:
    """The answer to a POST: a message for one LA, and what to show again if it failed."""

    la_code: str
    ok: bool
    message: str
    filled: Filled = field(default_factory=Filled)


def decisions_from_form(refs: Sequence[str], outcomes: Sequence[str], pasted: str) -> tuple[list[tuple[str, str]], bytes]:
    """The form's decisions, rows or pasted CSV, and their bytes for the ledger's ``decisions_sha256``.

    Empty rows are skipped, so decision N is the Nth filled row (or the CSV's Nth data row).
    Rows hash as the CSV ``cme retained resolve --decisions`` would read; a pasted CSV as pasted.

    Args:
        refs: the rows' refs, in form order.
        outcomes: the rows' outcome codes, in form order.
        pasted: the pasted CSV (``ref,outcome`` heading), or blank.

    Raises:
        UsageError: both rows and a CSV, a half-filled row, or a CSV that ``parse_decisions``
            refuses (messages give numbers, never a value).
    """
    rows = [(r.strip(), o.strip()) for r, o in zip_longest(refs, outcomes, fillvalue="") if r.strip() or o.strip()]
    if pasted.strip():
        if rows:
            raise UsageError("give the decisions as rows or as a pasted CSV, not both")
        return parse_decisions(pasted, PASTED), pasted.encode("utf-8")
    for i, (ref, outcome) in enumerate(rows, start=1):
        if not ref or not outcome:
            raise UsageError(f"decision {i}: give both a ref and an outcome")
    return rows, ("ref,outcome\n" + "".join(f"{r},{o}\n" for r, o in rows)).encode("utf-8")


def apply(home: Home, la_code: str, refs: Sequence[str], outcomes: Sequence[str], pasted: str,
          today: dt.date) -> Answer:
    """Apply one LA's form (all or nothing) and record it as the CLI does; the page's message.

    Args:
        home: the LA services.
        la_code: the LA the form was for.
        refs: the rows' refs.
        outcomes: the rows' outcome codes.
        pasted: the pasted CSV, or blank.
        today: the day of the findings.
    """
    filled = Filled([(r.strip(), o.strip()) for r, o in zip_longest(refs, outcomes, fillvalue="")
                     if r.strip() or o.strip()], pasted)
    if la_code not in las_with_store(home.settings):
        return Answer(la_code, False, "there is no such LA with retained children on this home", filled)
    try:
        decisions, source = decisions_from_form(refs, outcomes, pasted)
        result = resolve(home, la_code, decisions, today)
    except UsageError as refused:  # checked before anything is applied; numbers, never a value
        return Answer(la_code, False, f"{refused}; nothing was applied", filled)
    except CmeError as failed:  # typed errors carry fields and numbers, never a value
        return Answer(la_code, False, f"{failed}; run cme evidence verify and cme retained figures", filled)
    try:
        run_id = record_findings(home, la_code, result, source)
    except CmeError as failed:
        return Answer(la_code, False, f"the findings were applied ({_counts(result)}) but the ledger entry "
                       f"failed: {failed}; run cme evidence verify")
    return Answer(la_code, True, f"{_counts(result)}. Ledger entry follow_up_recorded (run {run_id}), "
                   "checkpoint signed.")


def _counts(result: FollowUpResult) -> str:
    return (f"records deleted: {result.deleted}; added to the CME register (rest deleted): {result.added_to_cme}; "
            f"still under enquiry: {result.under_enquiry}")


def render(home: Home, base: str, today: dt.date, answer: Answer | None = None) -> str:
    """``/officer``: per LA the findings form and the refs held on ``today``.

    Args:
        home: the LA services.
        base: the app's root path, for the form's action.
        today: the day retention is judged by.
        answer: the answer to the form just sent, if any.
    """
    body = ["<p>Record what each enquiry found. This page shows refs only: find the child with "
            "<code>cme retained list --la CODE</code> in your terminal. Every finding but "
            f"<i>{esc(OUTCOMES['added_to_cme'])}</i> and <i>{esc(OUTCOMES['under_enquiry'])}</i> deletes the "
            "child's record at once; the first moves only the CME register's fields into it. A batch applies "
            "whole or not at all.</p>"]
    if answer is not None:
        css, word = ("ok", "Recorded") if answer.ok else ("bad", "Not recorded")
        body.append(f'<p class="{css}" data-result="{"recorded" if answer.ok else "refused"}">'
                    f"{word} for {esc(answer.la_code)}: {esc(answer.message)}</p>")
    las = las_with_store(home.settings)
    if not las:
        body.append('<p class="muted">No LA has a store with retained children yet.</p>')
    for la_code in las:
        children = held(home, la_code, today)
        again = answer.filled if answer is not None and not answer.ok and answer.la_code == la_code else Filled()
        body.append(f"<h2>{esc(la_code)}</h2>")
        body.append(_form(base, la_code, [c.ref for c in children], again))
        body.append(f"<h3>Held on {esc(today.isoformat())}: {len(children)}</h3>")
        body.append(table(["ref", "outcome", "retained until", "follow-up note"], [
            cells(c.ref, c.outcome, c.retention_expiry.isoformat(),
                  f"{note_label(c.note)} ({c.noted_on.isoformat()})" if c.note and c.noted_on else note_label(c.note))
            for c in children]))
    return page(TITLE, "".join(body))


def _form(base: str, la_code: str, refs: list[str], filled: Filled) -> str:
    listed = f"refs-{la_code}"
    rows = [*filled.rows, *([("", "")] * max(ROWS - len(filled.rows), 0))]
    lines = []
    for i, (ref, chosen) in enumerate(rows, start=1):
        options = '<option value="">choose…</option>' + "".join(
            f'<option value="{esc(code)}"{" selected" if code == chosen else ""}>{esc(words)}</option>'
            for code, words in OUTCOMES.items())
        lines.append(f'<tr><td class="n">{i}</td><td><input name="ref" value="{esc(ref)}" list="{esc(listed)}" '
                     f'size="34" autocomplete="off" aria-label="ref of decision {i}"></td>'
                     f'<td><select name="outcome" aria-label="outcome of decision {i}">{options}</select></td></tr>')
    datalist = f'<datalist id="{esc(listed)}">' + "".join(f'<option value="{esc(r)}">' for r in refs) + "</datalist>"
    return (f'<form method="post" action="{esc(base)}/officer" data-la="{esc(la_code)}">'
            f'<input type="hidden" name="la" value="{esc(la_code)}">'
            "<table><thead><tr><th>#</th><th>ref</th><th>what the enquiry found</th></tr></thead>"
            f"<tbody>{''.join(lines)}</tbody></table>{datalist}"
            "<p>Or paste a CSV of <code>ref,outcome</code> rows with that heading (outcome codes: "
            f"{esc(', '.join(OUTCOMES))}), the file <code>cme retained resolve --decisions</code> reads:</p>"
            f'<p><textarea name="csv" rows="4" cols="70" aria-label="decisions as CSV">{esc(filled.csv)}</textarea></p>'
            '<p><button type="submit">Record the findings (all or nothing)</button></p></form>')
