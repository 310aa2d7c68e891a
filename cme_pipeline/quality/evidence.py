"""Keep each run's validation results, PII-free, for the evidence report."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from cme_pipeline.config import Settings
from cme_pipeline.durable import write_atomic
from cme_pipeline.quality.results import SuiteOutcome
from cme_pipeline.runs import run_key


def write_results(settings: Settings, la_code: str, run_id: str, outcomes: Iterable[SuiteOutcome]) -> Path:
    """Write the run's suite outcomes (names, counts; never values or row numbers); return the file.

    Writing again for the same run replaces the file, so a retried task gives the same result.

    Args:
        settings: the home.
        la_code: the LA.
        run_id: the Airflow run id.
        outcomes: what the suites returned, in the order they ran.
    """
    target = settings.evidence_dir(la_code) / "validations" / run_key(run_id) / "results.json"
    body = {"run_id": run_id, "la_code": la_code, "suites": [o.facts() for o in outcomes]}
    write_atomic(target, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode())
    return target
