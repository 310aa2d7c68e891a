"""The CME officer's follow-up of retained children: what each enquiry found, and what it deletes.

A retained child is held only until the officer knows where they are. Each finding is one of
``OUTCOMES``; every one that says the child is in education, or not ours to follow, deletes the
child's record at once, under the same rules as a run (row deleted, retained key rotated, so the
ciphertext left in pages or WAL is unreadable). ``added_to_cme`` moves only what the CME
register holds (names, date of birth, sex, address, postcode) into it, with today's referral
date, and deletes the rest (NHS number, GP practice, registration). ``under_enquiry`` keeps the
child and notes the day. All decisions of a batch apply in one transaction or none do, and
``record_findings`` then writes the batch's ledger entry and checkpoint: ``cme retained resolve``
and the officer's page in Airflow's UI (``ui/officer.py``) both go through these two.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import secrets
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cme_pipeline import evidence
from cme_pipeline.areas import LA_NAMES
from cme_pipeline.errors import UsageError
from cme_pipeline.evidence.report import FollowUpSummary
from cme_pipeline.home import Home
from cme_pipeline.schemas import HEALTH_ADDRESS_LINES
from cme_pipeline.store import follow_up as fstore
from cme_pipeline.store import retained as rstore
from cme_pipeline.store import staging as sstore

# code -> what the officer found (wording for the officer, the DPO report and the ledger's reader)
OUTCOMES: dict[str, str] = {
    "school_wales": "found at a school in Wales",
    "school_england": "found at a school in England",
    "independent_school": "found at an independent school",
    "ehe_notified": "electively home educated (notified)",
    "moved_out_of_wales": "moved out of Wales",
    "not_resident": "GP registration out of date / child not resident",
    "added_to_cme": "confirmed missing education, added to the CME register",
    "under_enquiry": "still under enquiry",
}
# Findings recorded by the pipeline itself, never chosen by the officer: the cross-LA check
# (la/cross_la.py) resolves a child it found on another LA's register, and a later delivery's
# run (la/minimise.py) one it matched to this LA's own registers.
CHECK_OUTCOMES: dict[str, str] = {
    "other_la_register": "on another Welsh LA's register (cross-LA check)",
    "other_la_extract": "moved: on another Welsh LA's later GP extract (cross-LA check)",
    "matched_later_extract": "on a register at this LA's later GP extract (its own run)",
}
LABELS: dict[str, str] = OUTCOMES | CHECK_OUTCOMES
# The cross-LA check's note on a child it only possibly found elsewhere: + that LA's code.
POSSIBLE_NOTE = "possibly_on_"
KEEPS = frozenset({"under_enquiry"})  # the child stays held
DECISION_COLUMNS = ("ref", "outcome")
# Welsh Government guidance expects initial checks within 20 school days.
INITIAL_CHECK_SCHOOL_DAYS = 20
AGE_BANDS = ((0, 20, "up to 20 school days"), (21, 40, "21 to 40 school days"), (41, 10**6, "more than 40 school days"))


def note_label(note: str) -> str:
    """The words for a held child's note: an officer's finding, or the cross-LA check's "possibly
    on another LA's register", naming that LA, whose CME officer is the first call."""
    if note.startswith(POSSIBLE_NOTE):
        code = note.removeprefix(POSSIBLE_NOTE)
        return f"possibly on the register of {LA_NAMES.get(code, 'another Welsh LA')} ({code}): ask its CME officer first"
    return LABELS.get(note, note)


def ref_of(delivery_id: str, health_record_id: str) -> str:
    """The officer's reference for a retained child: delivery and row, never a personal value."""
    return f"{delivery_id}/{health_record_id}"


def _split(ref: str) -> tuple[str, str]:
    delivery_id, _, record_id = ref.strip().rpartition("/")
    return delivery_id, record_id


def read_decisions(path: Path) -> list[tuple[str, str]]:
    """A decisions CSV (``ref,outcome``), one row per child; rows as (ref, outcome) text.

    Raises:
        UsageError: unreadable, or not exactly the columns ``ref,outcome``.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        raise UsageError(f"{path.name} is not a readable UTF-8 CSV of ref,outcome") from None
    return parse_decisions(text, path.name)


def parse_decisions(text: str, source: str) -> list[tuple[str, str]]:
    """Decisions from CSV text (``ref,outcome`` heading, one row per child), as (ref, outcome).

    Args:
        text: the CSV (a file's content, or what the officer pasted into the page).
        source: what to call it in an error (a file name, "the pasted CSV").

    Raises:
        UsageError: not exactly the columns ``ref,outcome``, or a row of another length (the
            message gives the row's number, never a value).
    """
    rows = [r for r in csv.reader(io.StringIO(text.removeprefix("\ufeff"))) if any(c.strip() for c in r)]
    if not rows or tuple(c.strip().lower() for c in rows[0]) != DECISION_COLUMNS:
        raise UsageError(f"{source}: the columns must be exactly ref,outcome")
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise UsageError(f"{source} row {i}: expected 2 cells (ref, outcome), found {len(row)}")
    return [(r[0].strip(), r[1].strip().lower()) for r in rows[1:]]


@dataclass(frozen=True)
class FollowUpResult:
    """What a batch of decisions did (counts only)."""

    by_outcome: dict[str, int]
    deleted: int  # records deleted outright
    added_to_cme: int  # moved to the CME register (the rest deleted)
    under_enquiry: int  # still held, noted


def _validated(decisions: list[tuple[str, str]], held: dict[tuple[str, str], dt.date]) -> list[tuple[tuple[str, str], str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for i, (ref, outcome) in enumerate(decisions, start=1):
        if outcome not in OUTCOMES:
            raise UsageError(f"decision {i}: outcome must be one of {', '.join(OUTCOMES)}")
        key = _split(ref)
        if key not in held:
            raise UsageError(f"decision {i}: ref is not a child currently held (see cme retained list)")
        if key in seen:
            raise UsageError(f"decision {i}: ref repeats an earlier decision")
        seen.add(key)
        out.append((key, outcome))
    return out


def resolve(home: Home, la_code: str, decisions: list[tuple[str, str]], today: dt.date) -> FollowUpResult:
    """Apply the officer's findings in one transaction; none is applied if any is wrong.

    Args:
        home: the LA's services.
        la_code: the LA's ONS code.
        decisions: (ref, outcome code) pairs; ``ref`` as ``ref_of`` writes it.
        today: the day of the findings.

    Raises:
        UsageError: an unknown outcome, a ref not held, or a repeated ref (the message gives the
            decision's number, never a value of the child).
    """
    if not decisions:
        raise UsageError("no decisions given")
    engine = home.store(la_code)
    with engine.connect() as conn:
        held = fstore.live_children(conn, la_code, today)
    chosen = _validated(decisions, held)
    moving = [key for key, outcome in chosen if outcome == "added_to_cme"]
    cme_rows = _cme_records(home, la_code, moving, today)
    with engine.begin() as conn:
        # Re-checked inside the transaction: a purge or another officer may have got there first.
        live = fstore.live_children(conn, la_code, today)
        if any(key not in live for key, _ in chosen):
            raise UsageError("a child in the decisions is no longer held (purged or resolved meanwhile); nothing applied")
        gone = [key for key, outcome in chosen if outcome not in KEEPS]
        fstore.add_register_records(conn, la_code, "cme", cme_rows)
        rstore.delete_retained_keys(conn, la_code, gone)
        fstore.set_notes(conn, la_code, [k for k, o in chosen if o in KEEPS], "under_enquiry", today)
        fstore.record_resolutions(conn, la_code, [(o, held[k]) for k, o in chosen if o not in KEEPS], today)
    sstore.release_deleted_space(engine)
    rstore.finish_shredding(engine, home.keys, la_code)
    counts = Counter(o for _, o in chosen)
    return FollowUpResult(dict(sorted(counts.items())), deleted=len(gone) - len(moving),
                          added_to_cme=len(moving), under_enquiry=counts.get("under_enquiry", 0))


def record_findings(home: Home, la_code: str, result: FollowUpResult, source: bytes) -> str:
    """Record an applied batch in the LA's ledger and sign a checkpoint at once; return its run id.

    The officer's action is not an Airflow run: it gets its own run id. The entry holds outcome
    codes and counts, and the SHA-256 of the decisions as given, never a ref.

    Args:
        home: the LA's services.
        la_code: the LA's ONS code.
        result: what ``resolve`` did.
        source: the decisions as the officer gave them (a CSV's bytes, or ``ref,outcome`` text).
    """
    run_id = f"{evidence.FOLLOW_UP_RUN_PREFIX}{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}"
    evidence.record(home.settings, la_code, run_id, "follow_up_recorded", {
        "outcomes": result.by_outcome, "deleted": result.deleted, "added_to_cme_register": result.added_to_cme,
        "still_under_enquiry": result.under_enquiry, "decisions_sha256": hashlib.sha256(source).hexdigest(),
    })
    evidence.checkpoint(home.settings, home.keys, la_code)
    return run_id


def _cme_records(home: Home, la_code: str, keys: list[tuple[str, str]], today: dt.date) -> list[dict[str, object]]:
    """The CME register's fields of the children being added, from their decrypted records."""
    if not keys:
        return []
    from cme_pipeline.la.minimise import read_retained

    frame = read_retained(home, la_code, today=today)
    wanted = set(keys)
    rows = []
    for r in frame.to_dict("records"):
        if (r["delivery_id"], r["health_record_id"]) not in wanted:
            continue
        address = ", ".join(str(r[c]) for c in HEALTH_ADDRESS_LINES if r.get(c))
        rows.append({
            "record_id": f"CME-{today:%Y%m%d}-{secrets.token_hex(4)}",  # a new case reference
            "forename": r["forename"] or None, "middle_names": r["middle_names"] or None,
            "surname": r["surname"] or None, "dob": dt.date.fromisoformat(str(r["dob"])),
            "sex": r["sex"] or None, "address": address or None, "postcode": r["postcode"] or None,
            "referral_date": today,
        })
    return rows


def school_days(start: dt.date, end: dt.date) -> int:
    """Weekdays after ``start`` up to and including ``end`` (holidays are not known here)."""
    return int(np.busday_count(start + dt.timedelta(days=1), end + dt.timedelta(days=1))) if end > start else 0


@dataclass(frozen=True)
class FollowUpFigures:
    """The DPO's view of follow-up: counts and days only."""

    resolved_by_outcome: dict[str, int]
    resolved: int
    median_school_days: float | None  # from retained to resolved, over every resolution
    within_initial_check: int  # resolved within INITIAL_CHECK_SCHOOL_DAYS school days
    held_by_age: dict[str, int] = field(default_factory=dict)  # children still held, by school days held
    under_enquiry: int = 0  # of those, noted as still under enquiry


def figures(home: Home, la_code: str, today: dt.date) -> FollowUpFigures:
    """Resolved children by outcome, how quickly, and how long the rest have been held."""
    engine = home.store(la_code)
    with engine.connect() as conn:
        done = fstore.resolutions(conn, la_code)
        held = fstore.live_children(conn, la_code, today)
        notes = fstore.notes_of(conn, la_code)
    days = [school_days(a, b) for _, a, b in done]
    ages: Counter[str] = Counter()
    for retained_on in held.values():
        age = school_days(retained_on, today)
        ages[next(label for low, high, label in AGE_BANDS if low <= age <= high)] += 1
    return FollowUpFigures(
        resolved_by_outcome=dict(sorted(Counter(o for o, _, _ in done).items())),
        resolved=len(done),
        median_school_days=float(statistics.median(days)) if days else None,
        within_initial_check=sum(1 for d in days if d <= INITIAL_CHECK_SCHOOL_DAYS),
        held_by_age={label: ages.get(label, 0) for _, _, label in AGE_BANDS},
        under_enquiry=sum(1 for k in held if notes.get(k, ("",))[0] == "under_enquiry"),
    )


@dataclass(frozen=True)
class HeldChild:
    """A child held for follow-up as the officer's page shows it: ids, states and dates only."""

    ref: str
    outcome: str  # unmatched or possible
    retention_expiry: dt.date
    note: str = ""  # the officer's latest note (an outcome code), if any
    noted_on: dt.date | None = None


def held(home: Home, la_code: str, today: dt.date) -> list[HeldChild]:
    """Every child held on ``today``, soonest expiry first, from plain columns (nothing decrypted)."""
    with home.store(la_code).connect() as conn:
        rows = fstore.held_rows(conn, la_code, today)
        notes = fstore.notes_of(conn, la_code)
    out = []
    for delivery_id, record_id, outcome, expiry in rows:
        note, on = notes.get((delivery_id, record_id), ("", None))
        out.append(HeldChild(ref_of(delivery_id, record_id), outcome, expiry, note, on))
    return out


def notes_frame(home: Home, la_code: str) -> pd.DataFrame:
    """``ref``, ``follow_up`` and ``follow_up_on`` of every noted child, for the retained list."""
    with home.store(la_code).connect() as conn:
        notes = fstore.notes_of(conn, la_code)
    return pd.DataFrame(
        [{"ref": ref_of(d, r), "follow_up": o, "follow_up_on": on.isoformat()} for (d, r), (o, on) in notes.items()],
        columns=["ref", "follow_up", "follow_up_on"],
    )


def note_of(home: Home, la_code: str, delivery_id: str, health_record_id: str) -> tuple[str, dt.date] | None:
    """The officer's latest note on one held child (outcome code, day), if any."""
    with home.store(la_code).connect() as conn:
        return fstore.notes_of(conn, la_code).get((delivery_id, health_record_id))


def report_summary(home: Home, la_code: str, today: dt.date) -> FollowUpSummary:
    """The follow-up figures as the DPO report shows them (outcome labels, counts, days)."""
    f = figures(home, la_code, today)
    return FollowUpSummary(
        resolved_by_outcome={LABELS[o]: n for o, n in f.resolved_by_outcome.items()},
        median_school_days=f.median_school_days,
        within_initial_check=f.within_initial_check,
        initial_check_school_days=INITIAL_CHECK_SCHOOL_DAYS,
        held_by_age=f.held_by_age,
        under_enquiry=f.under_enquiry,
    )
