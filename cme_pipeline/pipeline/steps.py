"""The steps of the DAGs, one function per task: ``step(la_code, run_id, params) -> counts``.

Every step is idempotent for its run: it reads and writes only the run's partition and state
file, so Airflow may retry any of them. Nothing personal is returned, logged or written in plain.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cme_pipeline import evidence as proof
from cme_pipeline import quality
from cme_pipeline.areas import parse_la_codes
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.crypto import FileKeyStore
from cme_pipeline.crypto.scratch import read_sealed, write_sealed
from cme_pipeline.errors import CmeError, DeliveryRejected
from cme_pipeline.pipeline.runs import (
    RunPaths,
    read_state,
    shred_file,
    update_state,
    waiting_deliveries,
)
from cme_pipeline.school_age import academic_year_start

log = logging.getLogger(__name__)

# Fixed bins of the score histogram the DPO report draws (counts only).
PROBABILITY_BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0000001)
Params = Mapping[str, Any] | None


def _settings(params: Params) -> Settings:
    settings = load_settings()
    if not params:
        return settings
    return replace(
        settings,
        match_threshold=float(params.get("match_threshold") or settings.match_threshold),
        possible_threshold=float(params.get("possible_threshold") or settings.possible_threshold),
    )


def _context(la_code: str, run_id: str | None, params: Params) -> tuple[Settings, RunPaths, dict[str, Any]]:
    if not run_id:
        raise CmeError("a step needs the Airflow run id")
    settings = _settings(params)
    paths = RunPaths(settings, la_code, run_id)
    return settings, paths, read_state(paths)


def _suites(paths: RunPaths, step: str, outcomes: list[quality.SuiteOutcome]) -> None:
    """Keep PII-free suite outcomes for the evidence report, per step of the run."""
    quality.write_results(paths.settings, paths.la_code, f"{paths.run_id}#{step}", outcomes)
    state = read_state(paths)
    suites = dict(state.get("suites", {}))
    for outcome in outcomes:
        suites[f"{outcome.suite} ({outcome.subject})"] = bool(outcome.success)
    update_state(paths, suites=suites)


def plan(params: Mapping[str, Any]) -> list[str]:
    """LA codes among ``params['la_codes']`` with at least one delivery waiting."""
    settings = _settings(params)
    codes = parse_la_codes(",".join(params["la_codes"]))
    return [c for c in codes if waiting_deliveries(settings, c)]


def open_delivery(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Verify, decrypt in memory, validate and stage the LA's oldest waiting delivery."""
    from cme_pipeline import intake, minimise

    settings, paths, state = _context(la_code, run_id, params)
    assert run_id is not None
    if "delivery_id" in state:  # a retry: already staged for this run
        return {"la_code": la_code, "delivery_id": state["delivery_id"], "received": state["received"]}
    update_state(paths, run_id=run_id)
    waiting = waiting_deliveries(settings, la_code)
    if not waiting:
        raise CmeError(f"LA {la_code}: no delivery waiting in the inbox")
    year = int((params or {}).get("academic_year") or academic_year_start(dt.date.today()))
    try:
        opened = intake.open_delivery_file(settings, la_code, waiting[0], year)
    except DeliveryRejected as exc:
        facts = {"delivery_file": waiting[0].name, "check": exc.check}
        facts |= {k: v for k, v in dict(getattr(exc, "details", {}) or {}).items() if k != "reason"}
        proof.record(settings, la_code, run_id, "delivery_rejected", facts)
        update_state(paths, rejected=exc.reason, check=exc.check, delivery_file=waiting[0].name)
        raise
    manifest = opened.manifest
    proof.record(settings, la_code, run_id, "delivery_received", {
        "delivery_id": manifest.delivery_id,
        "delivery_sha256": manifest.plaintext_sha256,
        "rows": manifest.row_count,
        "extract_date": manifest.extract_date,
    })
    proof.record(settings, la_code, run_id, "delivery_validated", quality.facts(opened.validation))
    _suites(paths, "delivery", [opened.validation])
    # A run that died (killed, or abandoned) may have left this delivery part-processed: the
    # encrypted delivery in the inbox is still the source of truth, so start again from it.
    minimise.discard_delivery(settings, la_code, manifest.delivery_id)
    staged = minimise.stage_delivery(settings, la_code, manifest.delivery_id, opened.extract)
    state = update_state(
        paths,
        delivery_id=manifest.delivery_id,
        delivery_file=waiting[0].name,
        delivery_sha256=manifest.plaintext_sha256,
        received=len(opened.extract),
        year_start=year,
    )
    log.info("LA %s: staged %d records of delivery %s", la_code, len(opened.extract), manifest.delivery_id)
    del staged
    return {"la_code": la_code, "delivery_id": state["delivery_id"], "received": state["received"]}


def check_registers(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Load the LA's registers and validate them; return their sizes."""
    from cme_pipeline.store import load_registers, open_la_store

    settings, paths, _ = _context(la_code, run_id, params)
    assert run_id is not None
    engine = open_la_store(settings, la_code)
    try:
        registers = load_registers(engine, la_code)
    finally:
        engine.dispose()
    outcomes = quality.validate_registers(registers)
    _suites(paths, "registers", outcomes)
    sizes = {source: len(frame) for source, frame in registers.items()}
    proof.record(settings, la_code, run_id, "registers_validated", {"register_rows": sizes})
    update_state(paths, register_sizes=sizes)
    return {"la_code": la_code, **sizes}


def match(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Match every staged health record against every register; seal the outcomes for minimise."""
    import numpy as np

    from cme_pipeline import matching, minimise
    from cme_pipeline.store import load_registers, open_la_store

    settings, paths, state = _context(la_code, run_id, params)
    assert run_id is not None
    staged = minimise.load_staged(settings, la_code, state["delivery_id"])
    engine = open_la_store(settings, la_code)
    try:
        registers = load_registers(engine, la_code)
    finally:
        engine.dispose()
    config = matching.LinkConfig(
        match_threshold=settings.match_threshold, possible_threshold=settings.possible_threshold
    )
    health = matching.health_to_canonical(staged)
    outcomes = matching.match_registers(
        health, {s: matching.register_to_canonical(f) for s, f in registers.items()}, config
    )
    del staged, health
    outcome = quality.validate_match_output(
        outcomes, state["received"], {s: len(f) for s, f in registers.items()},
        settings.match_threshold, settings.possible_threshold,
    )
    _suites(paths, "match_output", [outcome])
    buffer = io.StringIO()
    outcomes.to_csv(buffer, index=False)
    write_sealed(FileKeyStore(settings.keys_dir), paths.scratch_key, paths.outcomes_file, buffer.getvalue().encode())
    counts = outcomes["outcome"].value_counts().to_dict()
    matched = outcomes[outcomes["outcome"] == "matched"]
    histogram, _ = np.histogram(outcomes["probability"].fillna(0.0), bins=PROBABILITY_BINS)
    facts = {
        "matched": int(counts.get("matched", 0)),
        "possible": int(counts.get("possible", 0)),
        "unmatched": int(counts.get("unmatched", 0)),
        "matched_by_register": {k: int(v) for k, v in matched["register"].value_counts().items()},
        "score_histogram": [int(v) for v in histogram],
        "score_bins": [round(b, 2) for b in PROBABILITY_BINS[:-1]],
        "match_threshold": settings.match_threshold,
        "possible_threshold": settings.possible_threshold,
    }
    proof.record(settings, la_code, run_id, "matched", facts)
    update_state(paths, **{k: facts[k] for k in ("matched", "possible", "unmatched", "matched_by_register")})
    return {"la_code": la_code, "matched": facts["matched"], "possible": facts["possible"], "unmatched": facts["unmatched"]}


def _outcomes(settings: Settings, paths: RunPaths) -> Any:
    import pandas as pd

    raw = read_sealed(FileKeyStore(settings.keys_dir), paths.scratch_key, paths.outcomes_file)
    return pd.read_csv(io.BytesIO(raw), dtype={"health_record_id": str, "register": str, "register_record_id": str},
                       keep_default_na=False, na_values={"probability": [""]})


def minimise(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Delete matched children's health data, retain the rest re-encrypted, destroy the data key."""
    from cme_pipeline import minimise as minimisation

    settings, paths, state = _context(la_code, run_id, params)
    assert run_id is not None
    today = dt.date.today()
    checked: list[quality.SuiteOutcome] = []

    def check_before_sealing(retained: Any, matched_numbers: frozenset[str]) -> None:
        # Runs inside minimisation's transaction: a failure raises and nothing is sealed.
        checked.append(quality.validate_retained(retained, matched_numbers, today))

    result = minimisation.minimise(
        settings, la_code, state["delivery_id"], run_id, _outcomes(settings, paths),
        verify_retained=check_before_sealing, today=today,
    )
    if checked:
        _suites(paths, "retained_before_sealing", checked)
    counts = {
        "received": result.received, "matched": result.matched, "possible": result.possible,
        "unmatched": result.unmatched, "retained": result.retained,
    }
    proof.record(settings, la_code, run_id, "minimised", counts)
    proof.record(settings, la_code, run_id, "key_destroyed", {
        "data_key_id": result.data_key_id, "destroyed_at": result.key_destroyed_at,
    })
    proof.record(settings, la_code, run_id, "retained", {
        "retained": result.retained, "retention_expiry": str(result.retention_expiry),
    })
    outcome = quality.validate_post_deletion(minimisation.staged_count(settings, la_code, state["delivery_id"]), counts)
    _suites(paths, "post_deletion", [outcome])
    update_state(paths, **counts, data_key_id=result.data_key_id, key_destroyed_at=result.key_destroyed_at,
                 retention_expiry=str(result.retention_expiry))
    return {"la_code": la_code, **counts}


def check_retained(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Re-check what was sealed: only unmatched/possible children, allowed columns, no matched child."""
    from cme_pipeline import minimise as minimisation
    from cme_pipeline.schemas import RETAINED

    settings, paths, state = _context(la_code, run_id, params)
    assert run_id is not None
    retained = minimisation.list_retained(settings, la_code, run_id)
    outcomes = _outcomes(settings, paths)
    matched_ids = set(outcomes.loc[outcomes["outcome"] == "matched", "health_record_id"])
    view = retained[[*RETAINED, "health_record_id"]]
    outcome = quality.validate_retained(view, (), dt.date.today(), matched_record_ids=matched_ids)
    if len(retained) != state["retained"]:
        raise CmeError(f"LA {la_code}: {len(retained)} records sealed for this run, minimisation counted {state['retained']}")
    _suites(paths, "retained", [outcome])
    proof.record(settings, la_code, run_id, "retained_validated", quality.facts(outcome))
    return {"la_code": la_code, "retained": len(retained)}


def evidence(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Certificate, report and checkpoint; then shred the processed delivery and the run scratch."""
    settings, paths, state = _context(la_code, run_id, params)
    assert run_id is not None
    certificate = proof.issue_certificate(settings, la_code, run_id, proof.CertificateFacts(
        delivery_id=state["delivery_id"],
        delivery_sha256=state["delivery_sha256"],
        received=state["received"],
        matched_by_register=state.get("matched_by_register", {}),
        possible=state["possible"],
        unmatched=state["unmatched"],
        retained=state["retained"],
        data_key_id=state["data_key_id"],
        data_key_destroyed_at=state["key_destroyed_at"],
        suites=state.get("suites", {}),
        forensic_self_check="data key destroyed; no plaintext written",
        retention_expiry=state["retention_expiry"],
    ))
    # The delivery is encrypted to the LA's long-term key: keeping it would undo the shredding.
    shred_file(settings.inbox(la_code) / state["delivery_file"])
    FileKeyStore(settings.keys_dir).destroy(paths.scratch_key)
    shred_file(paths.outcomes_file)
    proof.record(settings, la_code, run_id, "run_completed", {"certificate": certificate.name})
    report = proof.render_report(settings, la_code, run_id)
    proof.checkpoint(settings, la_code)
    update_state(paths, completed=True, report=str(report), certificate=str(certificate))
    return {"la_code": la_code, "completed": True}


def abandon(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """A step failed: discard everything staged or retained by this run; keep the delivery."""
    from cme_pipeline import minimise as minimisation

    settings, paths, state = _context(la_code, run_id, params)
    assert run_id is not None
    if "rejected" in state:
        proof.checkpoint(settings, la_code)
        return {"la_code": la_code, "message": f"{la_code}: delivery rejected and quarantined: {state['rejected']}"}
    if state.get("completed"):
        return {"la_code": la_code, "message": f"{la_code}: work completed and certified, but a task failed afterwards"}
    if "delivery_id" in state:
        minimisation.discard_delivery(settings, la_code, state["delivery_id"])
    FileKeyStore(settings.keys_dir).destroy(paths.scratch_key)
    shred_file(paths.outcomes_file)
    failure = "a step failed; staged data discarded, delivery kept encrypted for a rerun"
    update_state(paths, failure=failure)
    proof.record(settings, la_code, run_id, "run_failed", {"delivery_id": state.get("delivery_id", "")})
    proof.checkpoint(settings, la_code)
    return {"la_code": la_code, "message": f"{la_code}: {failure}"}


def purge(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Purge expired retained and review records of one LA (the retention DAG)."""
    from cme_pipeline import minimise as minimisation

    settings = _settings(params)
    result = minimisation.purge_expired(settings, la_code, dt.date.today())
    facts = {"purged_retained": result.retained, "purged_possible": result.possible}
    if run_id and (result.retained or result.possible):
        proof.record(settings, la_code, run_id, "purged", facts)
        proof.checkpoint(settings, la_code)
    return {"la_code": la_code, **facts}
