"""The delivery checkpoint: the decrypted extract, before anything of it is stored."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from cme_pipeline.quality.results import DeliveryInvalid, SuiteOutcome
from cme_pipeline.quality.runner import run_suite
from cme_pipeline.schemas import HEALTH_EXTRACT, SEX_CODES
from cme_pipeline.school_age import compulsory_dob_window

SUITE = "delivery"


def check_delivery(
    extract: pd.DataFrame,
    *,
    manifest_rows: int,
    year_start: int,
    extract_date: dt.date,
    subject: str = "the extract",
) -> SuiteOutcome:
    """Run the delivery suite; return its PII-free outcome (does not raise on failure).

    Args:
        extract: the parsed extract (strings, "" for empty).
        manifest_rows: the row count signed in the manifest.
        year_start: the run's academic year (its compulsory-school-age window).
        extract_date: the extract's date; no date in it may be later.
        subject: what to call it in messages (the delivery id).
    """
    earliest, latest = compulsory_dob_window(year_start)
    parameters = {
        "columns": list(HEALTH_EXTRACT),
        "manifest_rows": int(manifest_rows),
        "extract_date": extract_date.isoformat(),
        "dob_min": earliest.isoformat(),
        "dob_max": latest.isoformat(),
        "sex_codes": list(SEX_CODES),
    }
    # Empty strings are missing values: GX's not-null checks and the skipping of missing values
    # by map expectations both rely on real nulls.
    view = extract.replace("", None)
    return run_suite(SUITE, view, parameters, subject=subject)


def validate_delivery(
    extract: pd.DataFrame,
    *,
    manifest_rows: int,
    year_start: int,
    extract_date: dt.date,
    subject: str = "the extract",
) -> SuiteOutcome:
    """Run the delivery suite and raise ``DeliveryInvalid`` if it fails.

    Args:
        extract: the parsed extract (strings, "" for empty).
        manifest_rows: the row count signed in the manifest.
        year_start: the run's academic year.
        extract_date: the extract's date.
        subject: what to call it in messages.
    """
    outcome = check_delivery(
        extract, manifest_rows=manifest_rows, year_start=year_start, extract_date=extract_date, subject=subject
    )
    if not outcome.success:
        first = outcome.failed[0]
        raise DeliveryInvalid(outcome.message(), check=f"suite:{SUITE}:{first.name}", details=outcome.facts())
    return outcome
