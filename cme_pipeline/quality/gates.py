"""The gates after the delivery: registers, match output, retained set, post-deletion.

Each builds the frame its suite checks (adding, where a check needs it, a column derived by our
own code, so that no identifier ever has to be written into a suite), runs the suite, and raises
``QualityGateFailed`` if it fails. All return a PII-free ``SuiteOutcome``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

from cme_pipeline.quality.results import QualityGateFailed, SuiteOutcome
from cme_pipeline.quality.runner import run_suite
from cme_pipeline.schemas import (
    MATCH_OUTCOME,
    OUTCOMES,
    REGISTER_SOURCES,
    RETAINED,
    RETAINED_OUTCOMES,
    SEX_CODES,
    register_columns,
)

MATCH_CHECK_COLUMNS = ("matched_register_record", "outcome_band")
RETAINED_CHECK_COLUMNS = ("matched_child",)
POST_DELETION_COUNTS = ("received", "matched", "possible", "unmatched", "retained")


def _raise_if_failed(outcome: SuiteOutcome) -> SuiteOutcome:
    if not outcome.success:
        raise QualityGateFailed(outcome)
    return outcome


def _blank_to_null(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.replace("", None)


def validate_registers(registers: Mapping[str, pd.DataFrame]) -> list[SuiteOutcome]:
    """Check every register: its columns, unique ids, valid dates, records labelled with the source.

    Args:
        registers: frames keyed by source (``school_census``, ``eotas``, ``ehe``, ``cme``), in
            ``register_columns(source)`` as loaded from the LA store.

    Raises:
        QualityGateFailed: for the first register whose suite fails (after checking all).
    """
    outcomes = [check_register(source, frame) for source, frame in registers.items()]
    for outcome in outcomes:
        _raise_if_failed(outcome)
    return outcomes


def check_register(source: str, frame: pd.DataFrame) -> SuiteOutcome:
    """Run the registers suite on one register (a run's copy, or an export before it is imported).

    Args:
        source: the register (an unknown name fails: it has no data contract).
        frame: its rows in ``register_columns(source)``; row ``i`` is reported as ``i + 1``.
    """
    label = source if source in REGISTER_SOURCES else "unknown"
    # An unknown register has no data contract, so no column of it is allowed.
    columns = register_columns(source) if source in REGISTER_SOURCES else ()
    view = _blank_to_null(frame).copy()
    view.insert(0, "source", source)
    parameters = {
        "columns": ["source", *columns],
        "sources": list(REGISTER_SOURCES),
        "sex_codes": list(SEX_CODES),
    }
    return run_suite("registers", view, parameters, subject=f"register {label}")


def validate_match_output(
    outcomes: pd.DataFrame,
    received: int,
    register_sizes: Mapping[str, int],
    match_threshold: float,
    possible_threshold: float,
) -> SuiteOutcome:
    """Check the match output: one outcome per health record, register records used once, sane bands.

    Args:
        outcomes: ``MATCH_OUTCOME`` columns, one row per health record.
        received: health records in the delivery.
        register_sizes: records per register the delivery was matched against (names the
            registers an outcome may cite).
        match_threshold: probability at or above which a pair is a match.
        possible_threshold: probability at or above which a pair goes to review.
    """
    view = outcomes.copy()
    if "register" in view:
        # "" is how an outcome says "no candidate on any register": nothing to check, like null.
        view["register"] = view["register"].mask(view["register"].astype(str) == "")
    matched = view["outcome"] == "matched" if "outcome" in view else pd.Series(False, index=view.index)
    if {"register", "register_record_id"} <= set(view.columns):
        key = view["register"].astype(str) + ":" + view["register_record_id"].astype(str)
        view["matched_register_record"] = key.where(matched, None)
    else:
        view["matched_register_record"] = None
    if {"probability", "outcome"} <= set(view.columns):
        # One derived text column keeps the check vectorised (GX's column-pair check iterates rows).
        p = pd.to_numeric(view["probability"], errors="coerce")
        band = np.select([p >= match_threshold, p >= possible_threshold, p.notna()], ["match", "possible", "below"], "")
        pair = view["outcome"].astype(str) + ":" + pd.Series(band, index=view.index)
        view["outcome_band"] = pair.where((band != "") & view["outcome"].notna(), None)
    else:
        view["outcome_band"] = None
    parameters = {
        "columns": [*MATCH_OUTCOME, *MATCH_CHECK_COLUMNS],
        "received": int(received),
        "outcomes": list(OUTCOMES),
        "registers": sorted(register_sizes),
    }
    return _raise_if_failed(run_suite("match_output", view, parameters, subject="match output"))


def validate_retained(
    retained: pd.DataFrame,
    matched_nhs_numbers: Collection[str],
    today: dt.date,
    *,
    matched_record_ids: Collection[str] = (),
) -> SuiteOutcome:
    """Check the retained set: allowed columns and outcomes only, no matched child, expiry ahead.

    Args:
        retained: ``RETAINED`` columns, plaintext in memory (before sealing, or decrypted to
            re-check what was sealed); an extra ``health_record_id`` column is used for
            ``matched_record_ids`` and then dropped.
        matched_nhs_numbers: NHS numbers of the children matched in this run (held in memory
            only; the suite sees one derived true/false column, never a number).
        today: the run's date; every retention expiry must be later.
        matched_record_ids: per-delivery row references of the matched children: after the
            deletion their NHS numbers no longer exist, so the re-check compares references.
    """
    view = _blank_to_null(retained).copy()
    matched = pd.Series(False, index=view.index)
    if "nhs_number" in view:
        matched |= view["nhs_number"].isin(set(matched_nhs_numbers))
    if "health_record_id" in view:
        matched |= view.pop("health_record_id").isin(set(matched_record_ids))
    view["matched_child"] = matched.astype(bool)
    if "retention_expiry" in view:
        view["retention_expiry"] = view["retention_expiry"].map(
            lambda d: d.isoformat() if isinstance(d, dt.date) else d
        )
    parameters = {
        "columns": [*RETAINED, *RETAINED_CHECK_COLUMNS],
        "outcomes": list(RETAINED_OUTCOMES),
        "tomorrow": (today + dt.timedelta(days=1)).isoformat(),
    }
    return _raise_if_failed(run_suite("retained", view, parameters, subject="retained set"))


def validate_post_deletion(staged_remaining: int, counts: Mapping[str, int]) -> SuiteOutcome:
    """Check that the delivery's staged records are gone and the counts reconcile.

    Args:
        staged_remaining: staged records of the delivery still present after minimisation.
        counts: ``received``, ``matched``, ``possible``, ``unmatched`` and ``retained``.
    """
    row = {"staged_remaining": int(staged_remaining), **{k: int(counts.get(k, -1)) for k in POST_DELETION_COUNTS}}
    row["outcomes_reconcile"] = row["received"] == row["matched"] + row["possible"] + row["unmatched"]
    row["retained_reconciles"] = row["retained"] == row["possible"] + row["unmatched"]
    view = pd.DataFrame([row])
    parameters = {"columns": list(row)}
    return _raise_if_failed(run_suite("post_deletion", view, parameters, subject="post-deletion counts"))
