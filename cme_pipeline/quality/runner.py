"""Run one suite from ``expectations/`` over a DataFrame with an ephemeral GX context.

Results never carry a value: the result format is COMPLETE with ``exclude_unexpected_values``
and the only index GX may report is the frame's row number (a named index ``row``, 1-based), so
GX returns counts and row numbers. ``_outcome`` then copies out names, counts and row numbers
only, dropping exception messages and tracebacks (which can quote a value).

Great Expectations is imported here, inside functions: it takes seconds to import and logs
noisily, and the DAG files must parse fast.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from cme_pipeline.quality.results import ExpectationOutcome, SuiteOutcome

ROW_INDEX = "row"
MAX_ROWS_KEPT = 20
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,  # no value, partial list or value count in any result
    "unexpected_index_column_names": [ROW_INDEX],
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
}


def suites_dir() -> Path:
    """Where the suites live: shipped inside the wheel, or ``expectations/`` in a checkout."""
    packaged = Path(__file__).resolve().parents[1] / "expectations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "expectations"


@cache
def load_suite_spec(name: str) -> dict[str, Any]:
    """The suite's JSON as a DPO reads it.

    Args:
        name: the suite's file name without ``.json`` (``delivery``, ``registers``, ...).
    """
    spec: dict[str, Any] = json.loads((suites_dir() / f"{name}.json").read_text(encoding="utf-8"))
    ids = [e["meta"]["id"] for e in spec["expectations"]]
    if len(set(ids)) != len(ids):
        raise ValueError(f"suite {name}: expectation ids must be unique")
    return spec


def _quiet_gx() -> None:
    # GX logs at INFO (and via structlog when Airflow configured logging first); its records are
    # about metrics, but nothing from a validation belongs in a task log.
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.WARNING)


@cache
def _batch_definition() -> Any:
    """One ephemeral context and a whole-DataFrame batch definition, built once per process."""
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.execution_engine import pandas_execution_engine

    import cme_pipeline.quality.custom  # noqa: F401 - registers our expectations with GX

    # GX marks every batch with an MD5 fingerprint of its whole content: a hash of the health
    # data that nothing of ours reads (results keep names and counts only), and about a tenth of
    # a suite run's time. Frames of at least HASH_THRESHOLD bytes get none; now every frame.
    pandas_execution_engine.HASH_THRESHOLD = 0

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,  # no usage events leave the LA
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    asset = context.data_sources.add_pandas("cme").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole")


@cache
def _suite(name: str) -> Any:
    from great_expectations import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    _batch_definition()  # custom expectations must be registered first
    spec = load_suite_spec(name)
    suite = ExpectationSuite(name=spec["name"])
    for item in spec["expectations"]:
        suite.add_expectation_configuration(
            ExpectationConfiguration(type=item["type"], kwargs=item["kwargs"], meta=item["meta"]),
            match_type="runtime",  # two checks may share a column (dob in the past, dob in window)
        )
    if len(suite.expectations) != len(spec["expectations"]):
        raise ValueError(f"suite {name}: two expectations are identical")
    return suite


def warm_up() -> None:
    """Import GX, build the context and every suite now (a process that forks workers pays once)."""
    for path in sorted(suites_dir().glob("*.json")):
        _suite(path.stem)


def with_row_index(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame indexed by 1-based row number, the only index GX may put in a result."""
    return frame.set_axis(pd.RangeIndex(1, len(frame) + 1, name=ROW_INDEX), axis=0)


def validate_raw(name: str, frame: pd.DataFrame, parameters: dict[str, Any]) -> Any:
    """Run a suite and return GX's own result object (tests scan it; callers use ``run_suite``).

    Args:
        name: the suite's name.
        frame: the data, indexed by ``with_row_index``.
        parameters: values of the suite's ``$PARAMETER`` placeholders.
    """
    from great_expectations.validator.v1_validator import Validator

    # What ``Batch.validate`` does, without building the batch first only to build it again.
    validator = Validator(_batch_definition(), result_format=RESULT_FORMAT, batch_parameters={"dataframe": frame})
    return validator.validate_expectation_suite(_suite(name), expectation_parameters=parameters)


def run_suite(name: str, frame: pd.DataFrame, parameters: dict[str, Any], *, subject: str) -> SuiteOutcome:
    """Validate ``frame`` with the named suite; return a PII-free outcome (never raises on failure).

    Args:
        name: the suite's name (a file in ``expectations/``).
        frame: the data; its index is replaced by 1-based row numbers.
        parameters: values of the suite's ``$PARAMETER`` placeholders.
        subject: what was checked, for messages (``delivery D2026...``, ``register ehe``).
    """
    raw = validate_raw(name, with_row_index(frame), parameters)
    by_id = {r.expectation_config.meta["id"]: r for r in raw.results}
    outcomes = tuple(_outcome(item, by_id[item["meta"]["id"]]) for item in load_suite_spec(name)["expectations"])
    return SuiteOutcome(
        suite=name,
        subject=subject,
        success=all(o.success for o in outcomes),
        rows_checked=len(frame),
        expectations=outcomes,
    )


def _outcome(item: dict[str, Any], result: Any) -> ExpectationOutcome:
    meta, kwargs = item["meta"], item["kwargs"]
    res: dict[str, Any] = dict(result.result or {})
    error = bool((result.exception_info or {}).get("raised_exception")) or any(
        isinstance(v, dict) and v.get("raised_exception") for v in (result.exception_info or {}).values()
    )
    rows: list[int] = []
    for entry in res.get("unexpected_index_list") or []:
        if isinstance(entry, dict):  # {"row": [...]} when values are excluded
            rows.extend(int(r) for r in entry.get(ROW_INDEX, [])[:MAX_ROWS_KEPT])
        elif isinstance(entry, int):
            rows.append(entry)
    count = res.get("unexpected_count")
    observed = expected = None
    if item["type"].startswith("expect_table_row_count"):  # counts of rows are never personal
        observed = res.get("observed_value") if isinstance(res.get("observed_value"), int) else None
        value = result.expectation_config.kwargs.get("value")
        expected = value if isinstance(value, int) else None
    return ExpectationOutcome(
        name=meta["id"],
        expectation=item["type"],
        column=kwargs.get("column"),
        success=bool(result.success) and not error,
        explain=meta["explain"],
        unexpected_count=int(count) if count is not None else None,
        element_count=int(res["element_count"]) if res.get("element_count") is not None else None,
        rows=tuple(rows[:MAX_ROWS_KEPT]),
        error=error,
        observed=observed,
        expected=expected,
    )
