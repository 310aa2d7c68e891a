"""Every suite passes on good input and fails on the input it exists to catch; no result leaks."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from fixtures_quality import EXTRACT_DATE, YEAR, GoodExtract

from cme_pipeline.config import Settings
from cme_pipeline.nhs_number import generate_test_numbers, is_valid
from cme_pipeline.quality import (
    QualityGateFailed,
    check_delivery,
    validate_match_output,
    validate_post_deletion,
    validate_registers,
    validate_retained,
    write_results,
)
from cme_pipeline.quality.custom import nhs_number_valid
from cme_pipeline.quality.runner import load_suite_spec, validate_raw, with_row_index
from cme_pipeline.schemas import (
    HEALTH_EXTRACT,
    HEALTH_REQUIRED,
    MATCH_OUTCOME,
    RETAINED,
)

TODAY = dt.date(2026, 11, 2)


def _failed(outcome_or_exc: object) -> set[str]:
    outcome = getattr(outcome_or_exc, "outcome", outcome_or_exc)
    return {e.name for e in outcome.failed}  # type: ignore[attr-defined]


# -- the custom NHS number expectation ----------------------------------------------------------


def test_nhs_check_digit_agrees_with_the_reference_implementation() -> None:
    rng = np.random.default_rng(5)
    candidates = generate_test_numbers(500, rng) + [f"{n:010d}" for n in rng.integers(0, 10**10, 2000)]
    candidates += ["", "999 123 4567", "99912345６7", "abcdefghij", "12345678901", "9434765919"]
    got = nhs_number_valid(pd.Series(candidates)).tolist()
    assert got == [is_valid(c) and c.isascii() and len(c) == 10 for c in candidates]
    assert sum(got) > 500  # both outcomes are exercised


# -- delivery -----------------------------------------------------------------------------------


def _delivery(frame: pd.DataFrame, rows: int | None = None):  # noqa: ANN202
    return check_delivery(frame, manifest_rows=len(frame) if rows is None else rows, year_start=YEAR,
                          extract_date=EXTRACT_DATE)


def test_delivery_suite_passes_on_a_good_extract(good_extract: GoodExtract) -> None:
    outcome = _delivery(good_extract.frame)
    assert outcome.success and outcome.rows_checked == 40
    assert len(outcome.expectations) == len(load_suite_spec("delivery")["expectations"])


def test_delivery_suite_itself_fails_on_an_extra_column(good_extract: GoodExtract) -> None:
    # The strict parser stops this first; the suite holds the same rule for any other caller.
    assert "exact_columns" in _failed(_delivery(good_extract.frame.assign(parent_name="x")))


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("nhs_number", "9990000000", "nhs_number_check_digit"),
        ("gp_practice_code", "97001", "gp_practice_code_format"),
        ("registration_date", "2027-01-01", "registration_date_not_future"),
        ("address_line1", "+44 Evil Road", "address_line1_no_formula"),
        ("postcode", "", "postcode_present"),
    ],
)
def test_delivery_suite_fails_on_what_it_catches(good_extract: GoodExtract, column: str, value: str, check: str) -> None:
    frame = good_extract.frame.copy()
    frame.loc[0, column] = value
    outcome = _delivery(frame)
    assert check in _failed(outcome)
    failed = next(e for e in outcome.failed if e.name == check)
    assert failed.rows == (1,) and failed.unexpected_count == 1


def test_suites_name_only_contract_columns_and_every_required_one() -> None:
    delivery = load_suite_spec("delivery")["expectations"]
    present = {e["kwargs"]["column"] for e in delivery if e["type"] == "expect_column_values_to_not_be_null"}
    assert present == set(HEALTH_REQUIRED)
    assert {e["kwargs"].get("column") for e in delivery} - {None} <= set(HEALTH_EXTRACT)
    for name in ("delivery", "registers", "match_output", "retained", "post_deletion"):
        spec = load_suite_spec(name)
        assert spec["name"] == name and spec["meta"]["checkpoint"]
        assert all(e["meta"]["explain"] for e in spec["expectations"])


def test_no_value_reaches_a_gx_result(good_extract: GoodExtract) -> None:
    """Break every row in every column, then scan GX's own full result for any personal value."""
    frame = good_extract.frame.copy()
    frame["nhs_number"] = frame["nhs_number"].str[:9] + "X"
    frame["dob"] = frame["dob"].str.replace("-", "/")
    frame["registration_date"] = "1899-02-30"
    for column in ("forename", "surname", "address_line1", "middle_names", "former_surname"):
        frame[column] = "=" + frame[column]
    frame["postcode"] = frame["postcode"].str.replace(" ", "")
    frame["sex"] = frame["forename"]
    frame.loc[1] = frame.loc[0]  # duplicates too
    view = with_row_index(frame.replace("", None))
    raw = validate_raw("delivery", view, {
        "columns": list(HEALTH_EXTRACT), "manifest_rows": 7, "extract_date": "2026-10-01",
        "dob_min": "2010-09-01", "dob_max": "2022-08-31", "sex_codes": ["M", "F", "U"],
    })
    text = json.dumps(raw.to_json_dict())
    assert not raw.success and text.count('"success": false') >= 10
    needles = good_extract.needles() + list(frame["nhs_number"]) + list(frame["dob"]) + list(frame["forename"])
    assert [n for n in needles if n in text] == []
    # nor a hash of them: GX's batch fingerprint (an MD5 of the whole frame) is switched off
    assert "pandas_data_fingerprint" not in text and raw.meta["batch_markers"].keys() == {"ge_load_time"}


# -- registers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registers() -> dict[str, pd.DataFrame]:
    from cme_pipeline.simulate import simulate_la

    return simulate_la("W06000015", children=60, seed=4, year_start=YEAR).registers


def test_registers_suite_passes_on_good_registers(registers: dict[str, pd.DataFrame]) -> None:
    outcomes = validate_registers(registers)
    assert [o.subject for o in outcomes] == [f"register {s}" for s in registers]
    assert all(o.success for o in outcomes)


def test_registers_suite_fails_on_duplicate_ids_bad_dates_extra_columns_and_unknown_sources(
    registers: dict[str, pd.DataFrame],
) -> None:
    census = registers["school_census"].copy()
    census.loc[1, "record_id"] = census.loc[0, "record_id"]
    census.loc[2, "dob"] = "2014-13-01"
    with pytest.raises(QualityGateFailed) as caught:
        validate_registers({"school_census": census})
    assert _failed(caught.value) == {"record_id_unique", "dob_real_date"}
    assert "register school_census" in str(caught.value) and "rows 1, 2" in str(caught.value)
    with pytest.raises(QualityGateFailed) as caught:
        validate_registers({"ehe": registers["ehe"].assign(nhs_number="9990000026")})
    assert _failed(caught.value) == {"exact_columns"}
    with pytest.raises(QualityGateFailed) as caught:
        validate_registers({"unlabelled": registers["school_census"]})
    assert {"source_labelled", "exact_columns"} <= _failed(caught.value)
    with pytest.raises(QualityGateFailed) as caught:
        validate_registers({"unlabelled": registers["school_census"].iloc[0:0]})
    assert _failed(caught.value) == {"exact_columns"}


# -- match output -------------------------------------------------------------------------------


def _outcomes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "health_record_id": ["h1", "h2", "h3", "h4", "h5"],
            "outcome": ["matched", "matched", "possible", "possible", "unmatched"],
            "register": ["school_census", "ehe", "school_census", "school_census", None],
            "register_record_id": ["A1", "E1", "A2", "A1", None],
            "probability": [0.99, 0.97, 0.7, 0.98, 0.1],
        }
    )[list(MATCH_OUTCOME)]


def _match(frame: pd.DataFrame, received: int = 5):  # noqa: ANN202
    return validate_match_output(frame, received, {"school_census": 10, "ehe": 2}, 0.95, 0.5)


def test_match_output_suite_passes_on_consistent_outcomes() -> None:
    assert _match(_outcomes()).success


@pytest.mark.parametrize(
    ("row", "column", "value", "check"),
    [
        (1, "health_record_id", "h1", "health_record_id_unique"),
        (1, "register_record_id", "A1", "register_record_matched_once"),
        (2, "probability", 1.2, "probability_in_range"),
        (0, "probability", 0.9, "outcome_agrees_with_thresholds"),
        (4, "probability", 0.6, "outcome_agrees_with_thresholds"),
        (2, "outcome", "maybe", "outcome_known"),
        (1, "register", "census", "register_known"),
    ],
)
def test_match_output_suite_fails_on_what_it_catches(row: int, column: str, value: object, check: str) -> None:
    frame = _outcomes()
    if column == "register_record_id":
        frame.loc[row, "register"] = "school_census"
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    with pytest.raises(QualityGateFailed) as caught:
        _match(frame)
    assert check in _failed(caught.value)


def test_match_output_suite_reads_an_empty_register_as_no_candidate() -> None:
    # match_registers writes "" (not null) for a child with no candidate on any register.
    frame = _outcomes()
    frame.loc[4, ["register", "register_record_id"]] = ["", ""]
    assert _match(frame).success


def test_match_output_suite_checks_the_outcomes_match_registers_writes() -> None:
    from cme_pipeline.matching import match_registers

    health = pd.DataFrame({"record_id": ["h1", "h2"], "forename": ["Siân", "Dafydd"], "surname": ["Jones", "Przybylski"],
                           "dob": ["2015-03-04", "2016-07-08"], "postcode": ["CF10 1AA", "CF5 2BB"]})
    census = health.iloc[:1].assign(record_id="P1")
    outcomes = match_registers(health, {"school_census": census, "ehe": census.iloc[:0]})
    assert (outcomes["register"] == "").any()
    assert validate_match_output(outcomes, 2, {"school_census": 1, "ehe": 0}, 0.95, 0.5).success


def test_match_output_suite_needs_one_outcome_per_health_record() -> None:
    with pytest.raises(QualityGateFailed) as caught:
        _match(_outcomes(), received=6)
    assert _failed(caught.value) == {"one_outcome_per_health_record"}
    assert "5 records, expected 6" in str(caught.value)


# -- retained -----------------------------------------------------------------------------------


def _retained(good: GoodExtract) -> pd.DataFrame:
    frame = good.frame.iloc[:6].copy()
    frame["outcome"] = ["unmatched", "possible"] * 3
    frame["best_probability"] = [0.1, 0.7] * 3
    frame["best_register"] = ["", "school_census"] * 3
    frame["run_id"] = "manual__2026-11-02"
    frame["retention_expiry"] = TODAY + dt.timedelta(days=90)
    return frame[list(RETAINED)]


def test_retained_suite_passes_on_unmatched_and_possible(good_extract: GoodExtract) -> None:
    matched = list(good_extract.frame["nhs_number"].iloc[10:20])
    assert validate_retained(_retained(good_extract), matched, TODAY).success


def test_retained_suite_fails_on_a_matched_childs_number_without_naming_it(good_extract: GoodExtract) -> None:
    retained = _retained(good_extract)
    matched = [retained.loc[3, "nhs_number"]]
    with pytest.raises(QualityGateFailed) as caught:
        validate_retained(retained, matched, TODAY)
    assert _failed(caught.value) == {"no_matched_child"} and "row 4" in str(caught.value)
    assert matched[0] not in str(caught.value) + json.dumps(caught.value.details)


def test_retained_recheck_by_record_reference_after_deletion(good_extract: GoodExtract) -> None:
    retained = _retained(good_extract).assign(health_record_id=lambda f: [f"r{i:06d}" for i in range(1, len(f) + 1)])
    assert validate_retained(retained, [], TODAY, matched_record_ids={"r999999"}).success
    with pytest.raises(QualityGateFailed) as caught:
        validate_retained(retained, [], TODAY, matched_record_ids={"r000002"})
    assert _failed(caught.value) == {"no_matched_child"}


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (lambda f: f.assign(school_code="6615003"), "exact_columns"),
        (lambda f: f.assign(outcome="matched"), "only_unmatched_or_possible"),
        (lambda f: f.assign(retention_expiry=TODAY), "retention_expiry_in_future"),
        (lambda f: f.assign(retention_expiry=None), "retention_expiry_present"),
    ],
)
def test_retained_suite_fails_on_what_it_catches(good_extract: GoodExtract, change, check: str) -> None:  # noqa: ANN001
    with pytest.raises(QualityGateFailed) as caught:
        validate_retained(change(_retained(good_extract)), [], TODAY)
    assert check in _failed(caught.value)


# -- post-deletion ------------------------------------------------------------------------------

GOOD_COUNTS = {"received": 100, "matched": 90, "possible": 4, "unmatched": 6, "retained": 10}


def test_post_deletion_suite_passes_when_staging_is_empty_and_counts_reconcile() -> None:
    assert validate_post_deletion(0, GOOD_COUNTS).success


@pytest.mark.parametrize(
    ("staged", "counts", "check"),
    [
        (3, GOOD_COUNTS, "staged_records_gone"),
        (0, GOOD_COUNTS | {"matched": 89}, "outcomes_reconcile"),
        (0, GOOD_COUNTS | {"retained": 11}, "retained_reconciles"),
    ],
)
def test_post_deletion_suite_fails_on_what_it_catches(staged: int, counts: dict[str, int], check: str) -> None:
    with pytest.raises(QualityGateFailed) as caught:
        validate_post_deletion(staged, counts)
    assert _failed(caught.value) == {check}


# -- results kept for the evidence report --------------------------------------------------------


def test_results_are_written_per_run_without_values_or_rows(settings: Settings, good_extract: GoodExtract) -> None:
    frame = good_extract.frame.copy()
    frame.loc[4, "dob"] = "1980-01-01"
    outcomes = [_delivery(frame), validate_post_deletion(0, GOOD_COUNTS)]
    path = write_results(settings, "W06000015", "manual__2026-11-02T10:00:00+00:00", outcomes)
    assert path.is_relative_to(settings.evidence_dir("W06000015") / "validations")
    body = json.loads(path.read_text())
    failed = body["suites"][0]["failed"]
    assert [f["name"] for f in failed] == ["dob_school_age"] and failed[0]["unexpected_count"] == 1
    text = path.read_text()
    assert "rows" not in text.replace("rows_checked", "")
    assert [n for n in good_extract.needles() + ["1980-01-01"] if n in text] == []


def test_the_gx_context_is_ephemeral_builds_no_data_docs_and_sends_no_analytics() -> None:
    from cme_pipeline.quality.runner import _batch_definition

    context = _batch_definition().data_asset.datasource.data_context
    config = context.get_config()
    assert type(context).__name__ == "EphemeralDataContext"
    assert not config.data_docs_sites and config.analytics_enabled is False
