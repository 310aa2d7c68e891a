"""The DPO's pages: per LA and run what arrived, what was deleted, what was kept and until when.

Every figure of a run comes from the ledger (and the signed certificate that repeats it), never
from the store: the evidence is what the DPO can hold the LA to. The one exception is each LA's
follow-up of retained children, the same figures as the DPO report's (``follow_up.report_summary``:
outcomes, counts and days from the store's follow-up tables, nothing decrypted), drawn as the page opens. The verification status is
``evidence.verify`` run now, on this run and LA, without Airflow's history (the auditor's page
does that cross-check), with the DPO's pinned keys and the NHS partner's witness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cme_pipeline.config import Settings
from cme_pipeline.crypto import KeyStore
from cme_pipeline.errors import CmeError
from cme_pipeline.evidence import files
from cme_pipeline.evidence.artefacts import read_pin
from cme_pipeline.evidence.certificate import read_certificate
from cme_pipeline.evidence.ledger import read_entries
from cme_pipeline.evidence.report import FollowUpSummary
from cme_pipeline.evidence.verify import VerifyReport, evidence_las, verify
from cme_pipeline.evidence.witness import WitnessCheck, check_witness, pinned_witness_key
from cme_pipeline.ui.html import cells, esc, href, link, page, status, table

# The ledger's last word on a run, in plain words.
OUTCOMES = {
    "run_completed": "completed", "run_failed": "failed", "delivery_rejected": "rejected",
    "purged": "retention purge", "reviewed": "review decisions", "follow_up_recorded": "follow-up recorded",
    "quarantine_expired": "quarantine expired", "registers_imported": "registers imported",
    "registers_refused": "registers refused", "subject_access": "subject access",
}


@dataclass
class RunFigures:
    """One run of one LA as its ledger entries tell it: ids, counts, dates."""

    run_id: str
    started: str = ""
    outcome: str = "in progress"
    delivery_id: str = ""
    extract_date: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # received, matched, possible, unmatched, retained
    matched_by_register: dict[str, int] = field(default_factory=dict)
    # Learning from review decisions (issue 19): the decisions the run's model learned from, and
    # the children it sent to follow-up instead of review because of them (counts only).
    decisions_learned_from: int = 0
    cleared_by_decisions: int = 0
    retention_expiry: str = ""
    data_key_destroyed_at: str = ""
    receiving_key_destroyed: bool = False
    suites: dict[str, bool] = field(default_factory=dict)

    @property
    def is_delivery(self) -> bool:
        """Whether the run processed (or refused) an NHS delivery."""
        return bool(self.delivery_id) or self.outcome == "rejected"


def run_figures(run_id: str, entries: list[dict[str, Any]]) -> RunFigures:
    """What the ledger says about one run (its entries in ledger order).

    Args:
        run_id: the run.
        entries: the run's ledger entries.
    """
    figures = RunFigures(run_id=run_id, started=str(entries[0].get("time", "")) if entries else "")
    for entry in entries:
        facts = entry.get("facts") or {}
        event = str(entry.get("event"))
        if event in OUTCOMES:
            figures.outcome = OUTCOMES[event]
        if event == "delivery_received":
            figures.delivery_id = str(facts.get("delivery_id", ""))
            figures.extract_date = str(facts.get("extract_date", ""))
        elif event == "minimised":
            figures.counts = {k: int(facts[k]) for k in ("received", "matched", "possible", "unmatched", "retained")
                              if isinstance(facts.get(k), int)}
        elif event == "matched":
            figures.matched_by_register = {str(k): int(v) for k, v in (facts.get("matched_by_register") or {}).items()}
            figures.decisions_learned_from = int(facts.get("review_decisions_learned_from") or 0)
            figures.cleared_by_decisions = int(facts.get("cleared_by_decisions") or 0)
        elif event == "retained":
            figures.retention_expiry = str(facts.get("retention_expiry", ""))
        elif event == "key_destroyed":
            figures.data_key_destroyed_at = str(facts.get("destroyed_at", ""))
        elif event == "receiving_key_destroyed":
            figures.receiving_key_destroyed = True
        elif event in ("delivery_validated", "retained_validated") and "suite" in facts:
            figures.suites[f"{facts['suite']} ({facts.get('subject')})"] = bool(facts.get("success"))
    return figures


def runs_of(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Ledger entries grouped by run, in order of each run's first entry."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        runs.setdefault(str(entry.get("run_id")), []).append(entry)
    return runs


def _entries(settings: Settings, la_code: str) -> list[dict[str, Any]] | None:
    try:
        return read_entries(settings, la_code)
    except CmeError:
        return None  # a line that is not JSON: verify reports which


def _split(report: VerifyReport) -> tuple[list[str], list[str], list[str]]:
    """(chain, checkpoint and evidence file problems; certificate problems; witness problems)."""
    witnessed = [p for p in report.problems if "witness" in p]
    cert = [p for p in report.problems if "certificate" in p and p not in witnessed]
    return [p for p in report.problems if p not in cert and p not in witnessed], cert, witnessed


def _verify(settings: Settings, keys: KeyStore, la_code: str, run_id: str | None) -> VerifyReport:
    """``verify`` of one LA (and run), with the DPO's pinned keys (``CME_EVIDENCE_PINS``) where set."""
    pins: dict[str, str] = {}
    try:
        pins = {la: read_pin(value) for la, value in settings.evidence_pins if la == la_code}
    except CmeError:
        report = VerifyReport()
        report.problems.append(f"{la_code}: a pinned verification key in CME_EVIDENCE_PINS is unreadable")
        return report
    return verify(settings, keys, run_id, [la_code], airflow=False, pins=pins)


def index(settings: Settings, keys: KeyStore, base: str, follow_up: Mapping[str, FollowUpSummary] | None = None) -> str:
    """``/dpo``: every LA's runs with their figures and certificate status, and its follow-up.

    Args:
        settings: the home.
        keys: the key store holding each LA's evidence verification key.
        base: the app's root path, for links.
        follow_up: LA -> its follow-up figures now (LAs without a store have none).
    """
    parts = ["<p>For each local authority, the runs its evidence ledger records: what arrived, "
             "what was deleted, what was kept and until when, and whether the ledger and each signed "
             "deletion certificate verify. Open a run for its certificate and report.</p>"]
    las = evidence_las(settings)
    if not las:
        parts.append('<p class="muted">No evidence yet: no run has processed a delivery on this home.</p>')
    for la_code in las:
        report = _verify(settings, keys, la_code, None)
        chain_problems, cert_problems, witness_problems = _split(report)
        entries = _entries(settings, la_code) or []
        rows, flags = [], []
        for run_id, run in runs_of(entries).items():
            f = run_figures(run_id, run)
            if not f.is_delivery:
                continue
            has_cert = files.certificate_file(settings, la_code, run_id).is_file()
            cert_bad = any(run_id in p for p in cert_problems)
            cert_cell = status(not cert_bad, "verified", "problems") if has_cert else (
                '<span class="bad">missing</span>' if f.outcome == "completed" else '<span class="muted">none</span>')
            rows.append([link(href(base, "dpo", la_code, run_id), run_id), *cells(
                f.started[:19].replace("T", " "), f.outcome, f.counts.get("received", ""), f.counts.get("matched", ""),
                f.counts.get("retained", ""), f.retention_expiry), cert_cell])
            flags.append(cert_bad or (f.outcome == "completed" and not has_cert))
        parts.append(f"<h2>{esc(la_code)}</h2><p>Ledger: {report.entries} entries, {report.checkpoints} signed "
                     f"checkpoints; hash chain, checkpoints and evidence files {status(not chain_problems)}; "
                     f"NHS partner's witness {_witness_word(keys, witness_problems, _witness(settings, keys, la_code))}.</p>")
        parts.append(table(["run", "started (UTC)", "outcome", "received", "deleted", "kept", "kept until",
                            "certificate"], rows, numeric=frozenset({3, 4, 5}), flagged=flags))
        if follow_up and la_code in follow_up:
            parts.append(_follow_up(follow_up[la_code]))
    return page("DPO: what arrived, was deleted and was kept", "".join(parts))


def run_page(settings: Settings, keys: KeyStore, base: str, la_code: str, run_id: str) -> str | None:
    """``/dpo/{la}/{run}``: one run's figures, verification and certificate; None if unknown.

    Args:
        settings: the home.
        keys: the key store holding the LA's evidence verification key.
        base: the app's root path, for links.
        la_code: an LA with evidence under the home.
        run_id: a run the LA's ledger records.
    """
    if la_code not in evidence_las(settings):
        return None
    run = runs_of(_entries(settings, la_code) or []).get(run_id)
    if not run:
        return None
    f = run_figures(run_id, run)
    report = _verify(settings, keys, la_code, run_id)
    chain_problems, cert_problems, witness_problems = _split(report)
    cert_path = files.certificate_file(settings, la_code, run_id)
    body = [
        f"<p>LA <b>{esc(la_code)}</b>, run <code>{esc(run_id)}</code>, outcome <b>{esc(f.outcome)}</b>.</p>",
        "<h2>Verification</h2>",
        table(["check", "status"], [
            ["ledger hash chain, signed checkpoints and evidence files", status(not chain_problems)],
            ["deletion certificate: signature and agreement with the ledger",
             status(not cert_problems) if cert_path.is_file() else '<span class="muted">no certificate</span>'],
            ["NHS partner's witness: cosignatures of the signed checkpoints",
             _witness_word(keys, witness_problems, _witness(settings, keys, la_code))],
            ["pinned verification key (CME_EVIDENCE_PINS)",
             "yes" if any(la == la_code for la, _ in settings.evidence_pins) else '<span class="muted">none pinned</span>'],
        ]),
        (f'<p class="ok" data-verified="yes">Evidence verified ({esc(_checked(report))}).</p>' if report.ok else
         '<p class="bad" data-verified="no">Evidence did NOT verify:</p><ul>'
         + "".join(f"<li>{esc(p)}</li>" for p in report.problems) + "</ul>"),
        "<h2>What arrived, was deleted and was kept</h2>",
        _figures(f),
        "<h2>Deletion certificate</h2>",
        _certificate(cert_path),
        "<h2>Report</h2>",
        (f"<p>{link(href(base, 'dpo', la_code, run_id, 'report'), 'The DPO report of this run')} (as written when "
         "the run finished).</p>" if files.report_file(settings, la_code, run_id).is_file()
         else '<p class="muted">No report was written for this run.</p>'),
    ]
    return page(f"DPO: run of {la_code}", "".join(body), up=href(base, "dpo"))


def _follow_up(summary: FollowUpSummary) -> str:
    """The follow-up figures as the DPO report shows them (``evidence.report``), now."""
    resolved = sum(summary.resolved_by_outcome.values())
    median = "none resolved yet" if summary.median_school_days is None else f"{summary.median_school_days:g}"
    rows = [cells("children resolved", resolved)]
    rows += [cells(f"  {label}", n) for label, n in summary.resolved_by_outcome.items()]
    rows += [cells("median school days from retained to resolved", median),
             cells(f"resolved within {summary.initial_check_school_days} school days (initial checks expected)",
                   f"{summary.within_initial_check} of {resolved}"),
             cells("children still held", sum(summary.held_by_age.values()))]
    rows += [cells(f"  held {band}", n) for band, n in summary.held_by_age.items()]
    rows.append(cells("  of which noted still under enquiry", summary.under_enquiry))
    return ("<h3>Follow-up of retained children (all runs, now)</h3><p>When the CME officer finds out where a "
            "retained child is, the child's record is deleted at once. School days are weekdays.</p>"
            + table(["", "children"], rows, numeric=frozenset({1})))


def _figures(f: RunFigures) -> str:
    if not f.counts:
        return f'<p class="muted">No records were deleted or kept by this run ({esc(f.outcome)}).</p>'
    rows = [cells("delivery", f.delivery_id), cells("extract date", f.extract_date),
            cells("records received", f.counts.get("received", "")),
            cells("matched to a register: health data deleted", f.counts.get("matched", ""))]
    rows += [cells(f"  of which on {name}", n) for name, n in sorted(f.matched_by_register.items())]
    rows += [cells("possible matches kept for review", f.counts.get("possible", "")),
             cells("on no register: kept for follow-up", f.counts.get("unmatched", "")),
             cells("officers' earlier review decisions learned from", f.decisions_learned_from),
             cells("  possible matches sent to follow-up instead of review because of them",
                   f.cleared_by_decisions),
             cells("kept (encrypted) in all", f.counts.get("retained", "")),
             cells("kept until", f.retention_expiry or "not recorded"),
             cells("delivery's data key destroyed at", f.data_key_destroyed_at or "not recorded"),
             cells("one-time receiving key destroyed", "yes" if f.receiving_key_destroyed else "no")]
    return table(["", "figure"], rows, numeric=frozenset({1}))


def _certificate(path: Path) -> str:
    if not path.is_file():
        return '<p class="muted">No certificate was issued for this run.</p>'
    try:
        body = read_certificate(path)
    except CmeError:
        return '<p class="bad">The certificate file is not valid JSON.</p>'
    facts = body.get("facts") or {}
    rows = [cells(k, body.get(k, "")) for k in ("format", "la_code", "run_id", "issued_at", "matched",
                                                "ledger_size", "ledger_head_hash", "key_id", "signature")]
    rows += [cells(f"facts.{k}", _plain(v)) for k, v in sorted(facts.items())]
    return table(["field", "value"], [[r[0], f"<code>{r[1]}</code>"] for r in rows])


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(value.items()))
    return str(value)


def _witness(settings: Settings, keys: KeyStore, la_code: str) -> WitnessCheck:
    entries = _entries(settings, la_code) or []
    return check_witness(settings, keys, la_code, entries)


def _witness_word(keys: KeyStore, problems: list[str], found: WitnessCheck) -> str:
    """The witness's verdict: not set up, problems, cosigned (how many), or waiting."""
    if pinned_witness_key(keys) is None:
        return '<span class="muted">not set up (no witness key pinned)</span>'
    if problems:
        return status(False)
    if found.cosigned:
        return status(True, f"verified ({found.cosigned} cosigned)")
    return '<span class="warn">awaiting the witness\'s first answer</span>'


def _checked(report: VerifyReport) -> str:
    return (f"{report.entries} ledger entries, {report.checkpoints} signed checkpoints, "
            f"{report.certificates} certificate(s); checked just now, without Airflow's run history")
