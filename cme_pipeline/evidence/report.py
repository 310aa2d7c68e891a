"""The DPO report of one run and LA: plain English, HTML, built from the ledger and certificate.

Only figures the ledger holds are shown (ids, counts, dates, suite outcomes), so the report can
hold no personal data; every string is escaped anyway, since ids come from files on disk.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from cme_pipeline import durable
from cme_pipeline.areas import LA_NAMES
from cme_pipeline.config import Settings
from cme_pipeline.crypto import KeyStore
from cme_pipeline.errors import CmeError
from cme_pipeline.evidence import artefacts, charts, files
from cme_pipeline.evidence import certificate as cert
from cme_pipeline.evidence.ledger import run_entries
from cme_pipeline.evidence.verify import verify

CSS = """
body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.5em 0 1em}td,th{border:1px solid #bbb;padding:4px 8px;text-align:left}
td.n{text-align:right}.ok{color:#176317;font-weight:bold}.bad{color:#a00;font-weight:bold}
.box{border:1px solid #bbb;padding:0.6em 1em;background:#f7f7f7}code{font-size:0.9em}
"""

SHREDDING = (
    "Every NHS record in this delivery was decrypted only in memory and stored, while being "
    "matched, encrypted under a data key made for this one delivery. Once matching was finished, "
    "the records of children found on an education register were deleted and the records kept "
    "for follow-up were re-encrypted under the separate retained-data key. The delivery's data "
    "key was then destroyed: its file was overwritten with random bytes and removed. Any copy of "
    "the deleted records that might survive on disk, in a database page or in a backup is "
    "encrypted under a key that no longer exists, so it cannot be read by anyone, including us. "
    "This is called crypto-shredding."
)


@dataclass(frozen=True)
class FollowUpSummary:
    """The officer's follow-up of the LA's retained children, for the DPO (counts and days only)."""

    resolved_by_outcome: Mapping[str, int]  # outcome label -> children resolved
    median_school_days: float | None
    within_initial_check: int
    initial_check_school_days: int
    held_by_age: Mapping[str, int]  # age band label -> children still held
    under_enquiry: int


def _follow_up(summary: FollowUpSummary) -> str:
    resolved = sum(summary.resolved_by_outcome.values())
    rows = [_figure(f"follow_up:{label}", label, n) for label, n in summary.resolved_by_outcome.items()]
    median = "none resolved yet" if summary.median_school_days is None else f"{summary.median_school_days:g}"
    held = sum(summary.held_by_age.values())
    return "\n".join([
        "<h2>Follow-up of retained children (all runs, as this report was drawn)</h2>",
        "<p>When the CME officer finds out where a retained child is, the child's record is deleted at once "
        "(or, for a child confirmed missing education, only what the CME register needs is moved into it and "
        "the rest deleted). School days are weekdays; holidays are not counted out.</p><table>",
        _figure("follow_up_resolved", "Children resolved", resolved), *rows,
        _figure("follow_up_median_days", "Median school days from retained to resolved", median),
        _figure("follow_up_within_initial_check",
                f"Resolved within {summary.initial_check_school_days} school days (initial checks expected)",
                f"{summary.within_initial_check} of {resolved}"),
        _figure("follow_up_held", "Children still held", held),
        *(_figure(f"follow_up_held:{label}", f"   held {label}", n) for label, n in summary.held_by_age.items()),
        _figure("follow_up_under_enquiry", "   of which noted still under enquiry", summary.under_enquiry),
        "</table>",
    ])


def _facts(entries: list[dict[str, Any]], event: str) -> dict[str, Any]:
    for entry in reversed(entries):
        if entry.get("event") == event:
            facts = entry.get("facts")
            return facts if isinstance(facts, dict) else {}
    return {}


def _figure(name: str, label: str, value: Any) -> str:
    shown = f"{value:,}" if isinstance(value, int) else escape(str(value))
    return f'<tr><th>{escape(label)}</th><td class="n" data-figure="{escape(name)}">{shown}</td></tr>'


def render_report(
    settings: Settings, keys: KeyStore, la_code: str, run_id: str, follow_up: FollowUpSummary | None = None,
) -> Path:
    """Write the DPO report of one run and LA from the ledger and certificate; return its path.

    Args:
        settings: the home.
        keys: the key store holding the LA's evidence verification key.
        la_code: the LA.
        run_id: the Airflow run id.
        follow_up: the LA's follow-up figures as the report is drawn (counts and days only).

    Raises:
        CmeError: the ledger holds nothing for this run.
    """
    entries = run_entries(settings, la_code, run_id)
    if not entries:
        raise CmeError(f"{la_code} run {run_id}: the ledger holds no entries for this run")
    path = files.certificate_file(settings, la_code, run_id)
    certificate = cert.read_certificate(path) if path.is_file() else None
    # The run is still open while its report is drawn (the checkpoint follows), and Airflow's
    # history is checked by `cme evidence verify`, not here.
    status = verify(settings, keys, run_id, [la_code], airflow=False, open_runs=frozenset({run_id}))
    body = "\n".join([
        _heading(la_code, run_id, entries),
        _verification(status.ok, status.problems),
        _outcome(settings, entries, certificate),
        _validations(entries, certificate),
        _follow_up(follow_up) if follow_up is not None else "",
        _ledger(entries),
    ])
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(f'CME deletion report {la_code} {run_id}')}</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
    target = files.report_file(settings, la_code, run_id)
    durable.write_atomic(target, page.encode())
    artefacts.bind(settings, la_code, run_id, target)
    return target


def _heading(la_code: str, run_id: str, entries: list[dict[str, Any]]) -> str:
    name = LA_NAMES.get(la_code, la_code)
    received = _facts(entries, "delivery_received")
    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return (
        f"<h1>NHS extract: what was received, deleted and kept</h1>"
        f"<p>{escape(name)} ({escape(la_code)}), pipeline run <code>{escape(run_id)}</code>. "
        f"Delivery <code>{escape(str(received.get('delivery_id', 'not recorded')))}</code>, "
        f"extract date {escape(str(received.get('extract_date', 'not recorded')))}, "
        f"SHA-256 <code>{escape(str(received.get('delivery_sha256', 'not recorded')))}</code>. "
        f"Report generated {escape(generated)}.</p>"
        "<p>This report contains counts, dates and identifiers of files and keys only: no child's "
        "name, date of birth, address or NHS number.</p>"
    )


def _verification(ok: bool, problems: list[str]) -> str:
    if ok:
        return ('<div class="box"><p class="ok" data-verified="yes">Evidence verified.</p><p>The ledger\'s hash '
                "chain, its signed checkpoints and this run's signed certificate were checked when this "
                "report was made and agree with each other. Anyone can repeat the check with "
                "<code>cme evidence verify</code> and the LA's published verification key.</p></div>")
    items = "".join(f"<li>{escape(p)}</li>" for p in problems)
    return (f'<div class="box"><p class="bad" data-verified="no">Evidence did NOT verify.</p>'
            f"<ul>{items}</ul></div>")


def _outcome(settings: Settings, entries: list[dict[str, Any]], certificate: dict[str, Any] | None) -> str:
    rejected = _facts(entries, "delivery_rejected")
    if rejected:
        return ("<h2>Delivery rejected</h2><p>The delivery failed the "
                f"{escape(str(rejected.get('check', 'delivery')))} check. Nothing was matched or kept; the "
                "delivery stays encrypted in quarantine.</p>")
    minimised = _facts(entries, "minimised")
    matched = _facts(entries, "matched")
    if not minimised:
        if "run_failed" in {e.get("event") for e in entries}:
            return ("<h2>Outcome</h2><p>The run failed before any record was deleted or kept; what it "
                    "staged was discarded and the delivery stays encrypted for a rerun.</p>")
        return "<h2>Outcome</h2><p>The run has not reached the deletion step yet.</p>"
    key = _facts(entries, "key_destroyed")
    retained = _facts(entries, "retained")
    by_register = {str(k): int(v) for k, v in (matched.get("matched_by_register") or {}).items()}
    received, possible = int(minimised.get("received", 0)), int(minimised.get("possible", 0))
    unmatched, kept = int(minimised.get("unmatched", 0)), int(minimised.get("retained", 0))
    deleted = int(minimised.get("matched", received - possible - unmatched))
    expiry = str(retained.get("retention_expiry", "not recorded"))
    rows = [
        _figure("received", "Records received", received),
        _figure("matched", "Matched to an education register: health data deleted", deleted),
        *(_figure(f"matched:{name}", f"   of which matched on {name}", n) for name, n in sorted(by_register.items())),
        _figure("possible", "Possible matches kept for review by an officer", possible),
        _figure("unmatched", "On no register: kept for follow-up", unmatched),
        _figure("retained", "Records retained (encrypted)", kept),
    ]
    # Learning from officers' review decisions (counts only; runs before it have no such facts).
    if isinstance(matched.get("review_decisions_learned_from"), int):
        rows += [_figure("review_decisions_learned_from", "Earlier review decisions the matching learned from "
                                                          "(agreement levels only)", matched["review_decisions_learned_from"]),
                 _figure("cleared_by_decisions", "   possible matches sent to follow-up instead of review, "
                                                 "officers having rejected every such pair",
                         int(matched.get("cleared_by_decisions", 0)))]
    # Restricted records (the NHS sensitive flag) arrive without any location; counts only.
    restricted_in = _facts(entries, "delivery_received").get("restricted_rows")
    if isinstance(restricted_in, int):
        rows += [_figure("restricted_received", "Restricted records received (no address, postcode or GP "
                                                "practice)", restricted_in),
                 _figure("restricted_retained", "   of which retained",
                         int(retained.get("restricted", 0)))]
    # Children already held from an earlier delivery (la/minimise.py): counts only.
    earlier = _facts(entries, "earlier_records")
    if earlier:
        rows += [_figure("earlier_matched_now", "Children held from an earlier delivery and matched now: earlier "
                                                "record deleted", int(earlier.get("matched_now", 0))),
                 _figure("earlier_retained_again", "Children held from an earlier delivery and retained again: "
                                                   "earlier record replaced by this one", int(earlier.get("retained_again", 0)))]
    thresholds = [t for t in (matched.get("possible_threshold"), matched.get("match_threshold")) if isinstance(t, float)]
    issued = escape(str(certificate.get("issued_at"))) if certificate else "not issued"
    return "\n".join([
        "<h2>What happened to the records</h2><table>", *rows, "</table>",
        charts.flow_chart(received, by_register, possible, unmatched, deleted, kept),
        "<h2>How sure the matching was</h2>",
        "<p>Each record's best match was given a probability. Records at or above the upper dashed "
        "line were treated as matched; between the lines, as possible matches for a person to check.</p>",
        charts.histogram(list(matched.get("score_histogram") or []), list(matched.get("score_bins") or []),
                         thresholds),
        "<h2>What was deleted and how</h2>", f"<p>{escape(SHREDDING)}</p>",
        "<table>", _figure("data_key_id", "Data key destroyed", str(key.get("data_key_id", "not recorded"))),
        _figure("data_key_destroyed_at", "Destroyed at", str(key.get("destroyed_at", "not recorded"))),
        _figure("certificate", "Signed deletion certificate issued", issued), "</table>",
        "<h2>How long the rest is kept</h2>",
        f"<p>Records of children on no register are kept, encrypted, until <b data-figure=\"retention_expiry\">"
        f"{escape(expiry)}</b> ({settings.retention_days} days), long enough for a CME officer's enquiries, "
        "and are then purged automatically. Possible matches wait for an officer's decision for at most "
        f"{settings.review_days} days.</p>",
    ])


def _validations(entries: list[dict[str, Any]], certificate: dict[str, Any] | None) -> str:
    suites: dict[str, bool] = {}
    if certificate:
        suites.update({str(k): bool(v) for k, v in (certificate.get("facts", {}).get("suites") or {}).items()})
    for event in ("delivery_validated", "retained_validated"):
        facts = _facts(entries, event)
        if "suite" in facts:
            suites.setdefault(f"{facts['suite']} ({facts.get('subject')})", bool(facts.get("success")))
    if not suites:
        return "<h2>Data quality checks</h2><p>No check results were recorded for this run.</p>"
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td class=\"{'ok' if passed else 'bad'}\">{'passed' if passed else 'FAILED'}</td></tr>"
        for name, passed in sorted(suites.items())
    )
    return ("<h2>Data quality checks (Great Expectations)</h2><p>Each check confirms, for example, that "
            "the delivery held only the agreed columns and that nothing of a matched child was kept.</p>"
            f"<table><tr><th>Check</th><th>Result</th></tr>{rows}</table>")


def _ledger(entries: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td class=\"n\">{escape(str(e.get('seq')))}</td><td>{escape(str(e.get('time')))}</td>"
        f"<td>{escape(str(e.get('event')))}</td><td><code>{escape(str(e.get('hash'))[:16])}</code></td></tr>"
        for e in entries
    )
    return ("<h2>Ledger entries of this run</h2><table><tr><th>#</th><th>Time (UTC)</th><th>Step</th>"
            f"<th>Hash (first 16)</th></tr>{rows}</table>")
