"""The steps of the DAGs, one function per task: ``step(la_code, run_id, params) -> counts``.

Every step is idempotent for its run: it reads and writes only the run's partition and state
file, so Airflow may retry any of them. Nothing personal is returned, logged or written in plain.
Each step builds a ``RunContext`` from the composition root (``home.py``) and works only through it.
Module-level imports stay light: DAG files import this module at parse time to name the steps.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cme_pipeline.areas import parse_la_codes
from cme_pipeline.config import Settings, check_thresholds, load_settings
from cme_pipeline.errors import CmeError, DeliveryRejected
from cme_pipeline.runs import RunPaths, read_state, update_state, waiting_deliveries

if TYPE_CHECKING:
    from cme_pipeline.home import Home

log = logging.getLogger(__name__)

# Fixed bins of the score histogram the DPO report draws (counts only).
PROBABILITY_BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0000001)
Params = Mapping[str, Any] | None


def _settings(params: Params) -> Settings:
    """Settings from the environment, with the run's thresholds where its Params give them.

    A threshold of 0 is a value, not "unset": only a missing or null Param falls back.
    """
    settings = load_settings()
    given = params or {}
    match_at, possible_at = given.get("match_threshold"), given.get("possible_threshold")
    chosen = replace(
        settings,
        match_threshold=settings.match_threshold if match_at is None else float(match_at),
        possible_threshold=settings.possible_threshold if possible_at is None else float(possible_at),
    )
    check_thresholds(chosen.match_threshold, chosen.possible_threshold)
    return chosen


@dataclass(frozen=True)
class RunContext:
    """What a step of one LA's run works with: the home's services, the run's settings and partition."""

    home: Home  # imported lazily at run time: it pulls in SQLAlchemy, which DAG parsing must not
    la_code: str
    run_id: str
    paths: RunPaths

    @property
    def settings(self) -> Settings:
        """The run's settings (thresholds from its Params)."""
        return self.home.settings

    def state(self) -> dict[str, Any]:
        """The run's state so far."""
        return read_state(self.paths)

    def record(self, event: str, facts: Mapping[str, Any]) -> None:
        """Append an evidence ledger entry for this run."""
        from cme_pipeline import evidence

        evidence.record(self.settings, self.la_code, self.run_id, event, dict(facts))

    def checkpoint(self) -> None:
        """Sign a checkpoint of the LA's ledger."""
        from cme_pipeline import evidence

        evidence.checkpoint(self.settings, self.home.keys, self.la_code)


def _context(la_code: str, run_id: str | None, params: Params) -> RunContext:
    if not run_id:
        raise CmeError("a step needs the Airflow run id")
    from cme_pipeline.home import open_home

    home = open_home(_settings(params))
    return RunContext(home, la_code, run_id, home.run(la_code, run_id))


def _suites(ctx: RunContext, step: str, outcomes: list[Any]) -> None:
    """Keep PII-free suite outcomes (``quality.SuiteOutcome``) for the evidence report, per step."""
    from cme_pipeline import quality
    from cme_pipeline.evidence.artefacts import bind

    results = quality.write_results(ctx.settings, ctx.la_code, f"{ctx.run_id}#{step}", outcomes)
    bind(ctx.settings, ctx.la_code, ctx.run_id, results)
    suites = dict(ctx.state().get("suites", {}))
    for outcome in outcomes:
        suites[f"{outcome.suite} ({outcome.subject})"] = bool(outcome.success)
    update_state(ctx.paths, suites=suites)


def plan(params: Mapping[str, Any]) -> list[str]:
    """LA codes among ``params['la_codes']`` with a delivery waiting and registers fresh enough.

    An LA whose registers are too old is left out: its delivery waits, still encrypted, until a
    fresh register is imported (which updates the registers Asset and so starts another run).
    """
    from cme_pipeline.home import open_home
    from cme_pipeline.la.register_freshness import check_freshness

    settings = _settings(params)
    codes = parse_la_codes(",".join(params["la_codes"]))
    ready = []
    for code in (c for c in codes if waiting_deliveries(settings, c)):
        fresh = check_freshness(open_home(settings), code, dt.date.today())
        for line in fresh.warnings:
            log.warning("%s", line)
        for line in fresh.refusals:
            log.warning("%s; its delivery waits", line)
        if not fresh.refusals:
            ready.append(code)
    return ready


def open_delivery(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Verify, decrypt in memory, validate and stage the LA's oldest waiting delivery."""
    from cme_pipeline import quality
    from cme_pipeline.la import intake, minimise
    from cme_pipeline.school_age import academic_year_start

    ctx = _context(la_code, run_id, params)
    state = ctx.state()
    if "delivery_id" in state:  # a retry: already staged for this run
        return {"la_code": la_code, "delivery_id": state["delivery_id"], "received": state["received"]}
    update_state(ctx.paths, run_id=ctx.run_id)
    _purge_expired(ctx)  # retention never waits for the daily DAG, which may be paused
    waiting = waiting_deliveries(ctx.settings, la_code)
    if not waiting:
        raise CmeError(f"LA {la_code}: no delivery waiting in the inbox")
    year = int((params or {}).get("academic_year") or academic_year_start(dt.date.today()))
    try:
        opened = intake.open_delivery_file(ctx.home, la_code, waiting[0], year)
    except DeliveryRejected as exc:
        facts = {"delivery_file": waiting[0].name, "check": exc.check}
        facts |= {k: v for k, v in dict(getattr(exc, "details", {}) or {}).items() if k != "reason"}
        ctx.record("delivery_rejected", facts)
        update_state(ctx.paths, rejected=exc.reason, check=exc.check, delivery_file=waiting[0].name)
        raise
    manifest = opened.manifest
    ctx.record("delivery_received", {
        "delivery_id": manifest.delivery_id,
        "delivery_sha256": manifest.plaintext_sha256,
        "rows": manifest.row_count,
        "extract_date": manifest.extract_date,
        "restricted_rows": _restricted_count(opened.extract),
    })
    ctx.record("delivery_validated", quality.facts(opened.validation))
    _suites(ctx, "delivery", [opened.validation])
    # A run that died (killed, or abandoned) may have left this delivery part-processed: the
    # encrypted delivery in the inbox is still the source of truth, so start again from it.
    minimise.discard_delivery(ctx.home, la_code, manifest.delivery_id)
    received = minimise.stage_delivery(ctx.home, la_code, manifest.delivery_id, opened.extract)
    update_state(
        ctx.paths,
        delivery_id=manifest.delivery_id,
        prekey_id=manifest.recipient_key_id,
        delivery_file=waiting[0].name,
        delivery_sha256=manifest.plaintext_sha256,
        received=received,
        year_start=year,
    )
    log.info("LA %s: staged %d records of delivery %s", la_code, received, manifest.delivery_id)
    return {"la_code": la_code, "delivery_id": manifest.delivery_id, "received": received}


def _restricted_count(children: Any) -> int:
    """How many rows are marked restricted (a count for the DPO report, nothing else)."""
    from cme_pipeline.la.restricted import restricted_mask

    return int(restricted_mask(children).sum())


def _purge_expired(ctx: RunContext) -> None:
    from cme_pipeline.la.retention import purge_expired

    result = purge_expired(ctx.home, ctx.la_code, dt.date.today())
    if result.retained or result.possible:
        ctx.record("purged", {"purged_retained": result.retained, "purged_possible": result.possible})


def _registers(ctx: RunContext) -> dict[str, Any]:
    from cme_pipeline.store import load_registers

    return load_registers(ctx.home.store(ctx.la_code), ctx.la_code)


def check_registers(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Load the LA's registers and validate them; return their sizes."""
    from cme_pipeline import quality
    from cme_pipeline.la.register_freshness import check_freshness
    from cme_pipeline.store import register_loads_of

    ctx = _context(la_code, run_id, params)
    today = dt.date.today()
    fresh = check_freshness(ctx.home, la_code, today)
    for line in fresh.warnings:
        log.warning("%s", line)
    fresh.raise_if_refused()
    registers = _registers(ctx)
    _suites(ctx, "registers", quality.validate_registers(registers))
    sizes = {source: len(frame) for source, frame in registers.items()}
    loads = register_loads_of(ctx.home.store(la_code), la_code)
    ages = {source: (today - load.as_of).days for source, load in loads.items()}
    ctx.record("registers_validated", {"register_rows": sizes, "register_age_days": ages,
                                       "stale_warnings": len(fresh.warnings)})
    update_state(ctx.paths, register_sizes=sizes, register_versions=_register_versions(ctx))
    return {"la_code": la_code, **sizes}


def _register_versions(ctx: RunContext) -> dict[str, str]:
    """When each register was last replaced: the version of it this run validated."""
    from cme_pipeline.store import register_loads_of

    loads = register_loads_of(ctx.home.store(ctx.la_code), ctx.la_code)
    return {source: load.loaded_at.isoformat() for source, load in sorted(loads.items())}


def match(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Match every staged health record against every register; seal the outcomes for minimise."""
    import numpy as np

    from cme_pipeline import matching, quality
    from cme_pipeline.crypto.scratch import write_sealed
    from cme_pipeline.la import minimise
    from cme_pipeline.store.decided_pairs import load_decided_pairs

    ctx = _context(la_code, run_id, params)
    settings, state = ctx.settings, ctx.state()
    # An import (cme_registers, or the CLI) may have replaced a register since check_registers
    # validated it: match only against what was validated; the delivery waits for the next run,
    # which the import's Asset event starts.
    if _register_versions(ctx) != state.get("register_versions"):
        raise CmeError(f"LA {la_code}: a register was replaced during this run; "
                       "the delivery waits for the next run")
    staged = minimise.load_staged(ctx.home, la_code, state["delivery_id"])
    registers = _registers(ctx)
    config = matching.LinkConfig(
        match_threshold=settings.match_threshold, possible_threshold=settings.possible_threshold
    )
    health = matching.health_to_canonical(staged)
    # Officers' earlier review decisions (agreement levels only): patterns they kept rejecting
    # go to follow-up instead of review (matching.learn); they never make a match.
    decisions = load_decided_pairs(ctx.home.store(la_code), la_code)
    outcomes = matching.match_registers(
        health, {s: matching.register_to_canonical(f) for s, f in registers.items()}, config,
        decisions=decisions,
    )
    cleared = int(outcomes.attrs.get("cleared_by_decisions", 0))
    del staged, health  # plaintext health data: drop it as soon as it is no longer needed
    outcome = quality.validate_match_output(
        outcomes, state["received"], {s: len(f) for s, f in registers.items()},
        settings.match_threshold, settings.possible_threshold,
    )
    _suites(ctx, "match_output", [outcome])
    buffer = io.StringIO()
    outcomes.to_csv(buffer, index=False)
    write_sealed(ctx.home.keys, ctx.paths.scratch_key, ctx.paths.outcomes_file, buffer.getvalue().encode())
    claims = json.dumps(outcomes.attrs.get("matched_records", [])).encode()
    write_sealed(ctx.home.keys, ctx.paths.scratch_key, ctx.paths.claims_file, claims)
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
        "review_decisions_learned_from": len(decisions),
        "cleared_by_decisions": cleared,
    }
    ctx.record("matched", facts)
    update_state(ctx.paths, **{k: facts[k] for k in ("matched", "possible", "unmatched", "matched_by_register")})
    return {"la_code": la_code, "matched": facts["matched"], "possible": facts["possible"], "unmatched": facts["unmatched"]}


def _outcomes(ctx: RunContext) -> Any:
    import pandas as pd

    from cme_pipeline.crypto.scratch import read_sealed

    raw = read_sealed(ctx.home.keys, ctx.paths.scratch_key, ctx.paths.outcomes_file)
    return pd.read_csv(io.BytesIO(raw), dtype={"health_record_id": str, "register": str, "register_record_id": str},
                       keep_default_na=False, na_values={"probability": [""]})


def _claims(ctx: RunContext) -> list[tuple[str, str]]:
    """Every register record the run's matched children matched (written by the match step)."""
    from cme_pipeline.crypto.scratch import read_sealed

    if not ctx.paths.claims_file.exists():  # a run matched before the file existed
        return []
    raw = read_sealed(ctx.home.keys, ctx.paths.scratch_key, ctx.paths.claims_file)
    return [(str(r), str(i)) for r, i in json.loads(raw)]


def _shred_scratch(ctx: RunContext) -> None:
    from cme_pipeline.durable import shred_file

    ctx.home.keys.destroy(ctx.paths.scratch_key)
    shred_file(ctx.paths.outcomes_file)
    shred_file(ctx.paths.claims_file)


def minimise(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Delete matched children's health data, retain the rest re-encrypted, destroy the data key."""
    from cme_pipeline import quality
    from cme_pipeline.la import minimise as minimisation

    ctx = _context(la_code, run_id, params)
    state = ctx.state()
    today = dt.date.today()
    checked: list[quality.SuiteOutcome] = []

    def check_before_sealing(retained: Any, matched_numbers: frozenset[str]) -> None:
        # Runs inside minimisation's transaction: a failure raises and nothing is sealed.
        checked.append(quality.validate_retained(retained, matched_numbers, today))

    result = minimisation.minimise(
        ctx.home, la_code, state["delivery_id"], ctx.run_id, _outcomes(ctx),
        verify_retained=check_before_sealing, today=today, also_claimed=_claims(ctx),
    )
    if checked:
        _suites(ctx, "retained_before_sealing", checked)
    counts = {
        "received": result.received, "matched": result.matched, "possible": result.possible,
        "unmatched": result.unmatched, "retained": result.retained,
    }
    ctx.record("minimised", counts)
    ctx.record("key_destroyed", {"data_key_id": result.data_key_id, "destroyed_at": result.key_destroyed_at})
    restricted = _restricted_count(minimisation.list_retained(ctx.home, la_code, ctx.run_id))
    ctx.record("retained", {"retained": result.retained, "retention_expiry": str(result.retention_expiry),
                            "restricted": restricted})
    left = minimisation.staged_count(ctx.home, la_code, state["delivery_id"])
    _suites(ctx, "post_deletion", [quality.validate_post_deletion(left, counts)])
    update_state(ctx.paths, **counts, data_key_id=result.data_key_id, key_destroyed_at=result.key_destroyed_at,
                 retention_expiry=str(result.retention_expiry))
    return {"la_code": la_code, **counts}


def check_retained(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Re-check what was sealed: only unmatched/possible children, allowed columns, no matched child."""
    from cme_pipeline import quality
    from cme_pipeline.la import minimise as minimisation
    from cme_pipeline.schemas import RETAINED

    ctx = _context(la_code, run_id, params)
    state = ctx.state()
    retained = minimisation.list_retained(ctx.home, la_code, ctx.run_id)
    outcomes = _outcomes(ctx)
    matched_ids = set(outcomes.loc[outcomes["outcome"] == "matched", "health_record_id"])
    view = retained[[*RETAINED, "health_record_id"]]
    outcome = quality.validate_retained(view, (), dt.date.today(), matched_record_ids=matched_ids)
    if len(retained) != state["retained"]:
        raise CmeError(f"LA {la_code}: {len(retained)} records sealed for this run, minimisation counted {state['retained']}")
    _suites(ctx, "retained", [outcome])
    ctx.record("retained_validated", quality.facts(outcome))
    return {"la_code": la_code, "retained": len(retained)}


def evidence(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Certificate, report and checkpoint; then shred the processed delivery and the run scratch."""
    from cme_pipeline import evidence as proof
    from cme_pipeline.crypto import destroy_prekey
    from cme_pipeline.durable import shred_file
    from cme_pipeline.la import follow_up

    ctx = _context(la_code, run_id, params)
    settings, keys, state = ctx.settings, ctx.home.keys, ctx.state()
    certificate = proof.issue_certificate(settings, keys, la_code, ctx.run_id, proof.CertificateFacts(
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
    # From here the run's work stands: an abandon after a failure below must not discard it.
    update_state(ctx.paths, certified=True)
    # The delivery's one-time receiving key goes now: no copy of the delivery anywhere (a backup,
    # a transfer server, the partner's outbox) can be opened again. The file goes too.
    destroy_prekey(keys, la_code, state["prekey_id"])
    ctx.record("receiving_key_destroyed", {"prekey_id": state["prekey_id"], "delivery_id": state["delivery_id"],
                                           "why": "delivery processed"})
    shred_file(settings.inbox(la_code) / state["delivery_file"])
    _shred_scratch(ctx)
    ctx.record("run_completed", {"certificate": certificate.name})
    report = proof.render_report(settings, keys, la_code, ctx.run_id,
                                 follow_up.report_summary(ctx.home, la_code, dt.date.today()))
    ctx.checkpoint()
    update_state(ctx.paths, completed=True, report=str(report), certificate=str(certificate))
    return {"la_code": la_code, "completed": True}


def abandon(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """A step failed: discard everything staged or retained by this run; keep the delivery."""
    from cme_pipeline.la import minimise as minimisation

    ctx = _context(la_code, run_id, params)
    state = ctx.state()
    if "rejected" in state:
        ctx.checkpoint()
        return {"la_code": la_code, "message": f"{la_code}: delivery rejected and quarantined: {state['rejected']}"}
    if state.get("completed") or state.get("certified"):
        return {"la_code": la_code, "message": f"{la_code}: work completed and certified, but a task failed afterwards"}
    if "delivery_id" in state:
        minimisation.discard_delivery(ctx.home, la_code, state["delivery_id"])
    _shred_scratch(ctx)
    failure = "a step failed; staged data discarded, delivery kept encrypted for a rerun"
    update_state(ctx.paths, failure=failure)
    ctx.record("run_failed", {"delivery_id": state.get("delivery_id", "")})
    ctx.checkpoint()
    return {"la_code": la_code, "message": f"{la_code}: {failure}"}


def purge(la_code: str, run_id: str | None, params: Params) -> dict[str, Any]:
    """Purge expired retained and review records and end expired quarantines (the retention DAG)."""
    from cme_pipeline import evidence as proof
    from cme_pipeline.home import open_home
    from cme_pipeline.la.intake import expire_quarantine
    from cme_pipeline.la.retention import purge_expired

    home = open_home(_settings(params))
    today = dt.date.today()
    result = purge_expired(home, la_code, today)
    expired = expire_quarantine(home, la_code, today)
    facts = {"purged_retained": result.retained, "purged_possible": result.possible}
    if run_id:
        for item in expired:
            proof.record(home.settings, la_code, run_id, "quarantine_expired", {
                "delivery_file": item.delivery_file, "prekey_id": item.prekey_id,
                "prekey_destroyed": item.prekey_destroyed,
            })
        if result.retained or result.possible:
            proof.record(home.settings, la_code, run_id, "purged", facts)
        if expired or result.retained or result.possible:
            proof.checkpoint(home.settings, home.keys, la_code)
    return {"la_code": la_code, **facts, "quarantines_ended": len(expired)}


# The matching DAG's steps per LA, in order (the DAG file names these callables directly).
MATCHING_STEPS = (open_delivery, check_registers, match, minimise, check_retained, evidence)
