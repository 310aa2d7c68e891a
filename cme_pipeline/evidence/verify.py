"""``verify``: the ledger chain, every signature and checkpoint, every certificate against the
ledger, and the ledger against Airflow's own run history."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cme_pipeline.config import Settings
from cme_pipeline.crypto import KeyStore, signing
from cme_pipeline.errors import CmeError
from cme_pipeline.evidence import certificate as cert
from cme_pipeline.evidence import files, witness
from cme_pipeline.evidence.chain import check_chain
from cme_pipeline.runs import run_key


@dataclass
class VerifyReport:
    """The outcome: ``ok`` when no problem was found; one line per problem saying what and where."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    las: int = 0
    entries: int = 0
    checkpoints: int = 0
    certificates: int = 0
    airflow_runs: int | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def summary(self) -> str:
        """One line of what was checked."""
        airflow = "no Airflow history" if self.airflow_runs is None else f"{self.airflow_runs} Airflow runs"
        return (
            f"{self.las} LAs, {self.entries} ledger entries, {self.checkpoints} signed checkpoints, "
            f"{self.certificates} certificates, {airflow}"
        )


def evidence_las(settings: Settings) -> list[str]:
    """LA codes that have an evidence directory under the home, sorted."""
    root = settings.home / "la"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "evidence").is_dir())


def ledger_facts(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What a certificate must state, as the ledger recorded it for one run (fields it knows)."""
    out: dict[str, Any] = {}
    suites: dict[str, bool] = {}
    for entry in entries:
        facts = entry.get("facts") or {}
        event = entry.get("event")
        if event == "delivery_received":
            out["delivery_id"] = facts.get("delivery_id")
            out["delivery_sha256"] = facts.get("delivery_sha256")
        elif event == "matched":
            out["matched_by_register"] = facts.get("matched_by_register")
        elif event == "minimised":
            for name in ("received", "possible", "unmatched", "retained"):
                out[name] = facts.get(name)
        elif event == "key_destroyed":
            out["data_key_id"] = facts.get("data_key_id")
            out["data_key_destroyed_at"] = facts.get("destroyed_at")
        elif event == "retained":
            out["retention_expiry"] = facts.get("retention_expiry")
        elif event in ("delivery_validated", "retained_validated") and "suite" in facts:
            suites[f"{facts['suite']} ({facts.get('subject')})"] = bool(facts.get("success"))
    if suites:
        out["suites"] = suites
    return out


def check_certificates(
    settings: Settings, keys: KeyStore, la_code: str, entries: list[dict[str, Any]], run_id: str | None = None
) -> tuple[list[str], int]:
    """Check every certificate (or one run's) against its signature and the ledger.

    Args:
        settings: the home.
        keys: the key store holding the LA's evidence verification key.
        la_code: the LA.
        entries: the LA's ledger entries in file order.
        run_id: only this run, if given.

    Returns:
        The problem lines and the number of certificates checked.
    """
    problems: list[str] = []
    folder = files.certificates_dir(settings, la_code)
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if run_id is not None:
        paths = [p for p in paths if p.stem == run_key(run_id)]
    by_run: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_run.setdefault(str(entry.get("run_id")), []).append(entry)
    for path in paths:
        problems += _check_one(settings, la_code, keys, path, entries, by_run)
    for rid, run in by_run.items():
        if run_id is not None and rid != run_id:
            continue
        for entry in run:
            if entry.get("event") == "run_completed":
                name = (entry.get("facts") or {}).get("certificate")
                if not (files.certificates_dir(settings, la_code) / str(name)).is_file():
                    problems.append(f"{la_code} certificate {rid}: missing (ledger entry {entry.get('seq')} names it)")
    return problems, len(paths)


def _check_one(
    settings: Settings, la_code: str, keys: KeyStore, path: Any,
    entries: list[dict[str, Any]], by_run: dict[str, list[dict[str, Any]]],
) -> list[str]:
    try:
        body = cert.read_certificate(path)
    except CmeError:
        return [f"{la_code} certificate file {path.name}: not valid JSON (edited)"]
    rid = str(body.get("run_id"))
    where = f"{la_code} certificate {rid}"
    if not signing.verify(keys, la_code, cert.signed_payload(body), str(body.get("signature"))):
        return [f"{where}: signature invalid (edited or forged)"]
    problems = []
    if path.stem != run_key(rid):
        problems.append(f"{la_code} certificate file {path.name}: holds the certificate of run {rid} (replaced)")
    if body.get("la_code") != la_code:
        problems.append(f"{where}: issued for LA {body.get('la_code')!s:.12}, found in {la_code}'s evidence")
    run = by_run.get(rid)
    if not run:
        return [*problems, f"{where}: the ledger has no entries for this run"]
    stated = body.get("facts") or {}
    for name, value in ledger_facts(run).items():
        if name == "suites":
            wrong = sorted(k for k, v in value.items() if stated.get("suites", {}).get(k) != v)
            if wrong:
                problems.append(f"{where}: does not match ledger (suites: {', '.join(wrong)})")
        elif stated.get(name) != value:
            problems.append(f"{where}: does not match ledger ({name})")
    size = body.get("ledger_size")
    if isinstance(size, int) and 0 < size <= len(entries):
        if entries[size - 1].get("hash") != body.get("ledger_head_hash"):
            problems.append(f"{where}: the ledger it was issued against was rewritten (entry {size})")
    elif size:
        problems.append(f"{where}: issued against {size} ledger entries, found {len(entries)} (truncated)")
    return problems


def verify(
    settings: Settings, keys: KeyStore, run_id: str | None = None, la_codes: Iterable[str] | None = None,
    *, airflow: bool = True, open_runs: frozenset[str] = frozenset(), pins: Mapping[str, str] | None = None,
) -> VerifyReport:
    """Verify the evidence of every LA (or the given ones), optionally for one run.

    Args:
        settings: the home.
        keys: the key store holding each LA's evidence verification key.
        run_id: check only this run's certificates and Airflow record (the chain is always
            checked whole, since one broken link anywhere breaks everything after it).
        la_codes: the LAs to check (default: every LA with evidence under the home).
        airflow: cross-check against Airflow's run history if its metadata DB exists.
        open_runs: runs known to be in progress (their last entries may await a checkpoint).
        pins: LA code -> the fingerprint of its pinned verification key (kept outside the home).
    """
    from cme_pipeline.evidence import artefacts

    report = VerifyReport()
    codes = sorted(la_codes) if la_codes is not None else evidence_las(settings)
    history = None
    if airflow:
        from cme_pipeline.evidence import airflow_history

        history = airflow_history.load_runs(settings)
        if history is None:
            report.notes.append("no Airflow history yet: the ledger was not cross-checked against DAG runs")
        else:
            report.airflow_runs = len(history)
            open_runs = open_runs | {r.run_id for r in history if not r.finished}
    ledgers: dict[str, list[dict[str, Any]]] = {}
    for code in codes:
        chain = check_chain(settings, keys, code, open_runs)
        ledgers[code] = chain.entries
        report.problems += chain.problems
        report.notes += chain.notes
        witnessed = witness.check_witness(settings, keys, code, chain.entries)  # the NHS partner's cosignatures
        report.problems += witnessed.problems
        report.notes += witnessed.notes
        problems, count = check_certificates(settings, keys, code, chain.entries, run_id)
        report.problems += problems
        report.problems += artefacts.check_artefacts(settings, code, chain.entries, run_id)
        report.problems += artefacts.check_key(settings, keys, code, (pins or {}).get(code))
        report.las += 1
        report.entries += len(chain.entries)
        report.checkpoints += chain.checkpoints
        report.certificates += count
    if history is not None:
        from cme_pipeline.evidence import airflow_history

        report.problems += airflow_history.cross_check(settings, history, ledgers, run_id)
    return report
