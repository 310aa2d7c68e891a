"""Our own Great Expectations expectations: the NHS number check digit and ISO dates.

Importing this module registers the expectations with GX (by their snake_case names), so the
suites in ``expectations/*.json`` can refer to them. Only ``quality.runner`` imports it, lazily:
GX takes seconds to import and the library must stay light for the DAG parser.

Each metric is vectorised over the column (numpy/pandas), never a Python loop per value, so a
suite over an all-Wales extract stays cheap.
"""

from __future__ import annotations

from typing import Any, ClassVar, Union

import numpy as np
import pandas as pd
from great_expectations.compatibility import pydantic
from great_expectations.core.suite_parameters import SuiteParameterDict
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)

_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)  # modulus-11 weights of the first nine digits
_ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"


def nhs_number_valid(values: pd.Series) -> pd.Series:
    """True where a value is ten ASCII digits whose tenth is the modulus-11 check digit.

    Args:
        values: the column (strings; anything else is invalid).
    """
    text = values.astype(str)
    ten_digits = text.str.fullmatch(r"[0-9]{10}").fillna(False).to_numpy(dtype=bool)
    padded = np.where(ten_digits, text.to_numpy(dtype=object), "0000000000").astype("U10")
    digits = padded.view(np.uint32).reshape(-1, 10).astype(np.int64) - ord("0")
    check = 11 - (digits[:, :9] @ _WEIGHTS) % 11
    check[check == 11] = 0
    # A check digit of 10 is never issued, so such numbers are invalid whatever the tenth digit.
    ok = ten_digits & (check != 10) & (check == digits[:, 9])
    return pd.Series(ok, index=values.index)


def iso_dates(values: pd.Series) -> pd.Series:
    """Parse ``YYYY-MM-DD`` strings to timestamps; anything else (or an impossible date) is NaT."""
    text = values.astype(str)
    shaped = text.str.fullmatch(_ISO_DATE).fillna(False)
    parsed = pd.to_datetime(text.where(shaped), format="%Y-%m-%d", errors="coerce")
    return pd.Series(parsed, index=values.index)


class ColumnValuesValidNhsNumber(ColumnMapMetricProvider):
    """Per-row truth of the NHS number check."""

    condition_metric_name = "column_values.valid_nhs_number"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return nhs_number_valid(column)


class ExpectColumnValuesToBeValidNhsNumbers(ColumnMapExpectation):
    """Expect every value to be a ten-digit NHS number with a valid modulus-11 check digit.

    The first nine digits are weighted 10 down to 2; 11 minus the weighted sum modulo 11 is the
    check digit (11 counts as 0; a result of 10 means the number is never issued).
    """

    map_metric = "column_values.valid_nhs_number"
    success_keys = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["cme", "nhs"], "contributors": ["cme-pipeline"]}


class ColumnValuesRealIsoDate(ColumnMapMetricProvider):
    """Per-row truth of 'a real calendar date in YYYY-MM-DD form'."""

    condition_metric_name = "column_values.real_iso_date"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return iso_dates(column).notna()


class ExpectColumnValuesToBeRealIsoDates(ColumnMapExpectation):
    """Expect every value to be a real calendar date written ``YYYY-MM-DD`` (no 30 February)."""

    map_metric = "column_values.real_iso_date"
    success_keys = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["cme", "dates"], "contributors": ["cme-pipeline"]}


class ColumnValuesIsoDateBetween(ColumnMapMetricProvider):
    """Per-row truth of 'not a real date, or a date between min_date and max_date inclusive'."""

    condition_metric_name = "column_values.iso_date_between"
    condition_value_keys = ("min_date", "max_date")

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, min_date: str | None = None, max_date: str | None = None,
                **kwargs: Any) -> pd.Series:
        dates = iso_dates(column)
        ok = pd.Series(True, index=column.index)
        if min_date is not None:
            ok &= dates.isna() | (dates >= pd.Timestamp(min_date))
        if max_date is not None:
            ok &= dates.isna() | (dates <= pd.Timestamp(max_date))
        return ok


class ExpectColumnValuesToBeIsoDatesBetween(ColumnMapExpectation):
    """Expect every ``YYYY-MM-DD`` date in the column to fall from ``min_date`` to ``max_date``.

    Both bounds are inclusive ISO dates (either may be omitted). A value that is not a real date
    passes here: ``expect_column_values_to_be_real_iso_dates`` catches it, so each bad value is
    counted by one check only. Unlike GX's own ``expect_column_values_to_be_between`` this never
    compares text with dates, and never raises on a bad value.
    """

    map_metric = "column_values.iso_date_between"
    success_keys = ("min_date", "max_date", "mostly")
    min_date: Union[str, SuiteParameterDict, None] = pydantic.Field(default=None)  # noqa: UP007 - pydantic v1 field
    max_date: Union[str, SuiteParameterDict, None] = pydantic.Field(default=None)  # noqa: UP007
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["cme", "dates"], "contributors": ["cme-pipeline"]}
