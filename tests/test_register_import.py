"""Bringing an LA's own registers in: awkward real-world exports, refused whole or loaded whole.

Played as an LA analyst with this term's exports would: a school census from the MIS in
Windows-1252 with semicolons, blank lines and trailing spaces, dual-registered pupils listed twice,
dates as dd/mm/yyyy; EOTAS, EHE and CME registers from a case-management system as .xlsx with its
own headings; every file with columns the pipeline must never keep (ethnicity, SEN, free school
meals, parents), whose values a byte scan of the home and key store must not find afterwards.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook

from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.home import open_home
from cme_pipeline.la.register_files import read_export
from cme_pipeline.la.register_import import prepare
from cme_pipeline.la.register_mapping import preset
from cme_pipeline.store import load_register, register_loads_of, replace_register

LA = "W06000015"
SECRET = "ZZSENSITIVEQX"  # in every column that must be dropped; never stored anywhere
OLD_NAME = "Oldregisterchildqx"  # a child only on the register being replaced

CENSUS_HEADINGS = ["UPN", "Legal Surname", "Legal Forename", "Preferred Surname", "Preferred Forename",
                   "Middle Names", "Date of Birth", "Gender", "Address Line 1", "Address Line 2", "Town",
                   "Postcode", "LAESTAB", "School Type", "Enrolment Status", "Ethnicity", "SEN Provision",
                   "FSM Eligible", "Parent/Carer Name"]
# Welsh names with the diacritics Windows-1252 can carry (it has no ŵ or ŷ).
CENSUS = [
    ["A123456789012", "Jônes  ", "Siân", "Jones", "Sian", "", "03/04/2015", "Female", "1 Heol y Bont",
     "", "Caerdydd", "cf10 1aa", "6812345", "Maintained", "C"],
    ["A123456789013", "ap Iâl", "Dafydd", "", "", "Rhodrî Elís", "29/02/2016", "Male", "Fflat 2",
     "Stryd Fawr", "Cardiff", "CF24  3AA", "6812346", "Maintained", "M"],
    ["A123456789013", "ap Iâl", "Dafydd", "", "", "Rhodrî Elís", "29/02/2016", "M", "Fflat 2",
     "Stryd Fawr", "Cardiff", "CF24 3AA", "6819999", "Independent", "S"],  # dual registration
    ["A123456789014", "Gwenllïan", "Ffion", "", "", "", "2014-09-01", "F", "", "", "", "", "6812347",
     "maintained", "C"],
]


def _census_csv(path: Path, rows: list[list[str]], *, encoding: str = "cp1252", delimiter: str = ";") -> Path:
    out = io.StringIO(newline="")
    w = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    w.writerow([f"{h} " for h in CENSUS_HEADINGS])  # trailing spaces in headings too
    for i, row in enumerate(rows):
        w.writerow([*row, SECRET, SECRET, "Y", f"Mrs {SECRET}"])
        if i == 1:
            out.write("\r\n")  # a blank line, as exports from some MIS have
    out.write(delimiter * 4 + "\r\n")  # a row of empty cells at the end
    path.write_bytes(out.getvalue().encode(encoding))
    return path


def _xlsx(path: Path, headings: list[str], rows: list[list[object]]) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Export from case management", None])  # a title row is not the header: see below
    sheet.append([])
    sheet.append(headings)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


@pytest.fixture
def home(settings: Settings) -> Settings:
    """A home whose registers were loaded once, with a child only the old copy has."""
    engine = open_home(settings).store(LA)
    for source, frame in _old_registers().items():
        replace_register(engine, LA, source, frame, as_of=dt.date.today() - dt.timedelta(days=30))
    return settings


def _old_registers() -> dict[str, pd.DataFrame]:
    person = {"forename": OLD_NAME, "middle_names": None, "surname": "Old", "dob": "2015-01-01",
              "sex": "F", "address": "9 Old Road", "postcode": "CF11 9ZZ"}
    return {
        "school_census": pd.DataFrame([{"record_id": "OLD1", **person, "school_code": "6810000",
                                        "school_type": "maintained", "enrolment_status": "C"}]),
        "eotas": pd.DataFrame([{"record_id": "OLD2", **person, "provision": "PRU"}]),
        "ehe": pd.DataFrame([{"record_id": "OLD3", **person, "notified_date": "2025-09-01"}]),
        "cme": pd.DataFrame([{"record_id": "OLD4", **person, "referral_date": "2025-10-01"}]),
    }


def _files(settings: Settings) -> list[Path]:
    roots = [settings.home, Path(settings.keystore_uri.removeprefix("file:"))]
    return [p for root in roots if root.is_dir() for p in root.rglob("*") if p.is_file()]


def _found(settings: Settings, text: str) -> list[str]:
    """Files under the home or the key store holding ``text`` in any likely encoding."""
    needles = {text.encode(e) for e in ("utf-8", "utf-16-le", "utf-16-be")} | {text.upper().encode(), text.lower().encode()}
    return [str(p) for p in _files(settings) if any(n in p.read_bytes() for n in needles)]


def _cli(settings: Settings, *args: str) -> int:
    return main(["--home", str(settings.home), "registers", *args])


def test_a_windows_1252_census_with_blank_lines_and_dual_registrations_loads_cleanly(
    home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _census_csv(tmp_path / "census.csv", CENSUS)
    assert _cli(home, "import", "--la", LA, "--register", "school_census", str(path), "--as-of", "2026-11-20") == 0
    out = capsys.readouterr().out
    assert "cp1252, delimiter ';'" in out and "duplicate rows merged: 1" in out and "blank rows skipped: 2" in out
    census = load_register(open_home(home).store(LA), LA, "school_census").set_index("record_id")
    assert list(census.index) == ["A123456789012", "A123456789013", "A123456789014"]
    first = census.loc["A123456789012"]
    assert (first.forename, first.surname, first.dob, first.sex) == ("Siân", "Jônes", "2015-04-03", "F")
    assert (first.address, first.postcode) == ("1 Heol y Bont, Caerdydd", "CF10 1AA")
    dual = census.loc["A123456789013"]  # the main registration is kept, not the subsidiary one
    assert (dual.school_code, dual.enrolment_status, dual.middle_names, dual.postcode) == ("6812346", "M", "Rhodrî Elís", "CF24 3AA")
    assert pd.isna(census.loc["A123456789014"].address)
    load = register_loads_of(open_home(home).store(LA), LA)["school_census"]
    assert (load.as_of, load.rows, load.origin) == (dt.date(2026, 11, 20), 3, "file")
    assert _found(home, SECRET) == [] and _found(home, "Mrs ") == []  # dropped on reading


def test_the_replaced_register_leaves_no_trace_and_the_others_are_untouched(
    home: Settings, tmp_path: Path
) -> None:
    assert _found(home, OLD_NAME)  # the old copy is in the store before
    path = _census_csv(tmp_path / "census.csv", CENSUS)
    assert _cli(home, "import", "--la", LA, "--register", "school_census", str(path)) == 0
    engine = open_home(home).store(LA)
    assert "OLD1" not in set(load_register(engine, LA, "school_census")["record_id"])
    assert list(load_register(engine, LA, "eotas")["record_id"]) == ["OLD2"]  # other registers stay
    for source in ("eotas", "ehe", "cme"):
        replace_register(engine, LA, source, _old_registers()[source].iloc[0:0], as_of=dt.date.today())
    # SQLite's secure_delete zeroed the old rows and the WAL was checkpointed: no byte of them left.
    assert _found(home, OLD_NAME) == []


def test_case_management_exports_as_xlsx_load_with_a_mapping_file(home: Settings, tmp_path: Path) -> None:
    mapping = tmp_path / "ehe.toml"
    mapping.write_text(
        'register = "ehe"\n[columns]\nrecord_id = "Case No."\nforename = "Child First Name"\n'
        'surname = "Child Surname"\ndob = ["D.O.B", "Date of Birth"]\nsex = "Sex"\n'
        'address = ["Addr 1", "Addr 2", "Post Town"]\npostcode = "Post Code"\nnotified_date = "Date Notified to LA"\n',
        encoding="utf-8",
    )
    headings = ["Case No.", "Child First Name", "Child Surname", "D.O.B", "Sex", "Addr 1", "Addr 2", "Post Town",
                "Post Code", "Date Notified to LA", "Parent Name", "Reason for EHE"]
    rows: list[list[object]] = [
        ["EHE/1", "Llŷr", "Wyn", dt.datetime(2013, 5, 6), "Male", "Tŷ Gwyn", None, "Penarth", "CF64 1AA",
         dt.datetime(2025, 9, 3), f"Mr {SECRET}", SECRET],
        ["EHE/2", "Ŵyn", "Ellis ", "07/08/2012", "Female", "2 Ffordd", "Y Rhath", "Cardiff", "CF23 5BB",
         "10/09/2025", SECRET, SECRET],
    ]
    path = _xlsx(tmp_path / "ehe.xlsx", headings, rows)
    assert _cli(home, "import", "--la", LA, "--register", "ehe", str(path), "--mapping", str(mapping)) == 0
    ehe = load_register(open_home(home).store(LA), LA, "ehe").set_index("record_id")
    assert list(ehe.index) == ["EHE/1", "EHE/2"]
    assert tuple(ehe.loc["EHE/1", ["forename", "dob", "sex", "address", "notified_date"]]) == (
        "Llŷr", "2013-05-06", "M", "Tŷ Gwyn, Penarth", "2025-09-03")
    assert tuple(ehe.loc["EHE/2", ["forename", "surname", "dob", "address"]]) == (
        "Ŵyn", "Ellis", "2012-08-07", "2 Ffordd, Y Rhath, Cardiff")
    assert _found(home, SECRET) == []


_PRESET_HEADINGS = {
    "school_census": (["UPN", "Legal Forename", "Legal Surname", "Date of Birth", "Gender", "Address", "Postcode",
                       "LA Estab", "School Type", "Enrolment Status"], [6812345, "Maintained", "C"]),
    "eotas": (["Reference", "Forename", "Surname", "Date of Birth", "Gender", "Address", "Postcode", "Provision"],
              ["PRU"]),
    "ehe": (["EHE Reference", "First Name", "Last Name", "D.O.B.", "Sex", "Address", "Post Code", "Notification Date"],
            [dt.datetime(2025, 9, 3)]),
    "cme": (["CME Reference", "First Name", "Last Name", "DOB", "Gender", "Address", "Post Code", "Date of Referral"],
            [dt.datetime(2026, 10, 1)]),
}


def _csv_cell(value: object) -> str:
    return value.strftime("%d/%m/%Y") if isinstance(value, dt.datetime) else str(value)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("register", list(_PRESET_HEADINGS))
def test_each_register_loads_from_csv_and_xlsx_with_its_preset(
    home: Settings, tmp_path: Path, register: str, fmt: str
) -> None:
    headings, extra = _PRESET_HEADINGS[register]
    rows: list[list[object]] = [[f"{register}-{i}", f"Name{i}", "Pryce", dt.datetime(2014, 1, 1 + i), "U",
                                 f"{i} Church St, Barry", "CF62 7AA", *extra, SECRET] for i in range(3)]
    if fmt == "xlsx":
        path = _xlsx(tmp_path / f"{register}.xlsx", [*headings, "Notes"], rows)
    else:
        path = tmp_path / f"{register}.csv"
        out = io.StringIO(newline="")
        csv.writer(out).writerows([[*headings, "Notes"], *([_csv_cell(v) for v in row] for row in rows)])
        path.write_text(out.getvalue(), encoding="utf-8")
    assert _cli(home, "import", "--la", LA, "--register", register, str(path)) == 0
    frame = load_register(open_home(home).store(LA), LA, register)
    assert list(frame["record_id"]) == [f"{register}-{i}" for i in range(3)]
    assert list(frame["dob"]) == ["2014-01-01", "2014-01-02", "2014-01-03"]
    assert list(frame["address"]) == [f"{i} Church St, Barry" for i in range(3)]
    assert _found(home, SECRET) == []


@pytest.mark.parametrize("encoding,delimiter", [("utf-8-sig", ","), ("utf-16", "\t"), ("utf-8", "|")])
def test_csv_in_other_encodings_and_delimiters_reads_the_same(
    tmp_path: Path, encoding: str, delimiter: str
) -> None:
    path = _census_csv(tmp_path / "census.txt", CENSUS, encoding=encoding, delimiter=delimiter)
    export = read_export(path, preset("school_census").wanted())
    assert export.encoding == encoding and export.delimiter == delimiter
    prepared = prepare(path, preset("school_census"))
    assert prepared.problems == [] and list(prepared.frame["surname"]) == ["Jônes", "ap Iâl", "Gwenllïan"]
    assert SECRET not in json.dumps(prepared.frame.astype(str).to_dict())


def _register_bytes(settings: Settings) -> tuple[pd.DataFrame, object]:
    engine = open_home(settings).store(LA)
    return load_register(engine, LA, "school_census"), register_loads_of(engine, LA)["school_census"]


@pytest.mark.parametrize("change,problem", [
    (lambda rows: rows[0].__setitem__(6, "31/02/2015"), "column dob (heading 'Date of Birth'): not a date in a known format (YYYY-MM-DD or DD/MM/YYYY) at row 2"),
    (lambda rows: rows[3].__setitem__(6, "01/13/2014"), "column dob (heading 'Date of Birth'): not a date in a known format (YYYY-MM-DD or DD/MM/YYYY) at row 6"),
    (lambda rows: rows[1].__setitem__(2, " "), "column forename (heading 'Legal Forename'): empty at row 3"),
    (lambda rows: rows[2].__setitem__(2, "Dewi"), "column record_id (heading 'UPN'): the same id on different children"),
    (lambda rows: rows[0].__setitem__(7, "Boy?"), "column sex (heading 'Gender'): not a known sex or gender code"),
    (lambda rows: rows[0].__setitem__(13, "Academy"), "column school_type (heading 'School Type'): not a known school type"),
])
def test_a_bad_file_is_refused_whole_naming_column_and_row_and_the_register_stays(
    home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: object, problem: str
) -> None:
    rows = [list(r) for r in CENSUS]
    change(rows)  # type: ignore[operator]
    path = _census_csv(tmp_path / "census.csv", rows)
    before = _register_bytes(home)
    assert _cli(home, "import", "--la", LA, "--register", "school_census", str(path)) == 4
    err = capsys.readouterr().err
    assert problem in err
    for value in ("31/02/2015", "01/13/2014", "Dewi", "Boy?", "Academy", "Siân", "Jônes", SECRET):
        assert value not in err
    after = _register_bytes(home)
    pd.testing.assert_frame_equal(after[0], before[0])
    assert after[1] == before[1]
    ledger = (home.evidence_dir(LA) / "ledger.jsonl").read_text()
    refused = [json.loads(line) for line in ledger.splitlines() if '"registers_refused"' in line]
    assert len(refused) == 1 and refused[0]["facts"]["register"] == "school_census"


def test_an_export_missing_a_required_column_names_it_and_what_was_looked_for(
    home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "census.csv"
    path.write_text("UPN,Forename,Surname\nA1,Ann,Lee\n", encoding="utf-8")
    assert _cli(home, "import", "--la", LA, "--register", "school_census", str(path)) == 4
    err = capsys.readouterr().err
    assert "column dob: no heading of the export maps to it (looked for 'dob', 'Date of Birth'" in err
    assert "Ann" not in err and "Lee" not in err


def test_a_dry_run_shows_mapping_counts_and_problems_and_writes_nothing(
    home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _census_csv(tmp_path / "census.csv", CENSUS)
    ledger = home.evidence_dir(LA) / "ledger.jsonl"
    size = ledger.stat().st_size if ledger.exists() else 0
    before = _register_bytes(home)
    assert _cli(home, "import", "--la", LA, "--register", "school_census", str(path), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "forename          <- 'Legal Forename'" in out and "address           <- 'Address Line 1' + 'Address Line 2' + 'Town'" in out
    assert "dropped unread: 6 column(s)" in out and "'Ethnicity'" in out and "rows to load: 3" in out
    assert "would replace the current register; nothing written" in out
    assert SECRET not in out and "Siân" not in out
    pd.testing.assert_frame_equal(_register_bytes(home)[0], before[0])
    assert (ledger.stat().st_size if ledger.exists() else 0) == size


def test_the_import_is_in_the_ledger_with_counts_and_the_file_hash_only(home: Settings, tmp_path: Path) -> None:
    import hashlib

    path = _census_csv(tmp_path / "census.csv", CENSUS)
    assert _cli(home, "import", "--la", LA, "--register", "school_census", str(path)) == 0
    entries = [json.loads(line) for line in (home.evidence_dir(LA) / "ledger.jsonl").read_text().splitlines()]
    imported = [e for e in entries if e["event"] == "registers_imported"]
    assert len(imported) == 1
    facts = imported[0]["facts"]
    assert facts["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (facts["register"], facts["rows"], facts["replaced_rows"], facts["merged_duplicates"]) == ("school_census", 3, 1, 1)
    assert "Siân" not in json.dumps(entries, ensure_ascii=False) and "A123456789012" not in json.dumps(entries)
    assert main(["--home", str(home.home), "evidence", "verify", "--la", LA]) == 0


def test_registers_warn_then_refuse_as_they_age_and_status_says_so(
    home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from cme_pipeline.la.register_freshness import check_freshness

    engine = open_home(home).store(LA)
    today = dt.date.today()
    frames = _old_registers()
    replace_register(engine, LA, "eotas", frames["eotas"], as_of=today - dt.timedelta(days=home.register_warn_days + 1))
    fresh = check_freshness(open_home(home), LA, today)
    assert fresh.refusals == () and len(fresh.warnings) == 1 and "the eotas register" in fresh.warnings[0]
    replace_register(engine, LA, "ehe", frames["ehe"], as_of=today - dt.timedelta(days=home.register_max_days + 1))
    fresh = check_freshness(open_home(home), LA, today)
    assert len(fresh.refusals) == 1 and "the ehe register" in fresh.refusals[0]
    assert _cli(home, "status", "--la", LA) == 0
    out = capsys.readouterr().out
    assert "too old: runs refuse" in out and "old: runs warn" in out


def test_on_postgresql_a_good_file_replaces_the_register_whole_and_a_bad_one_changes_nothing(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cme_pipeline.config import load_settings

    settings = load_settings(tmp_path / "home", environ={"CME_DATABASE_URL": postgres_url,
                                                         "CME_KEYSTORE": f"file:{tmp_path / 'keys'}"})
    engine = open_home(settings).store(LA)
    assert engine.dialect.name == "postgresql"
    replace_register(engine, LA, "school_census", _old_registers()["school_census"], as_of=dt.date.today())
    good = _census_csv(tmp_path / "census.csv", CENSUS)
    bad_rows = [list(r) for r in CENSUS]
    bad_rows[0][6] = "31/31/2015"
    bad = _census_csv(tmp_path / "bad.csv", bad_rows)
    args = ["--home", str(settings.home), "registers", "import", "--la", LA, "--register", "school_census"]
    monkeypatch.setenv("CME_DATABASE_URL", postgres_url)
    monkeypatch.setenv("CME_KEYSTORE", f"file:{tmp_path / 'keys'}")
    assert main([*args, str(bad)]) == 4
    assert list(load_register(engine, LA, "school_census")["record_id"]) == ["OLD1"]
    assert main([*args, str(good)]) == 0
    assert "31/31/2015" not in capsys.readouterr().err
    census = load_register(engine, LA, "school_census")
    assert sorted(census["record_id"]) == ["A123456789012", "A123456789013", "A123456789014"]
    with engine.connect() as conn:  # the old row is gone, and the table was vacuumed to prune it
        vacuumed = conn.exec_driver_sql(
            "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'register_school_census'").scalar()
    assert vacuumed is not None


def test_a_register_replaced_during_a_run_stops_it_before_matching_and_the_next_run_uses_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cme_pipeline.errors import CmeError
    from cme_pipeline.pipeline import steps
    from cme_pipeline.runs import waiting_deliveries
    from cme_pipeline.simulate.wales import simulate_to_home

    monkeypatch.setenv("CME_HOME", str(settings.home))
    simulate_to_home(settings, [LA], children=300, seed=4)
    params = {"la_codes": [LA]}
    steps.open_delivery(LA, "manual__first", params)
    steps.check_registers(LA, "manual__first", params)
    engine = open_home(settings).store(LA)
    replace_register(engine, LA, "ehe", load_register(engine, LA, "ehe"), as_of=dt.date.today())  # an import
    with pytest.raises(CmeError, match="a register was replaced during this run"):
        steps.match(LA, "manual__first", params)
    assert len(waiting_deliveries(settings, LA)) == 1
    for step in steps.MATCHING_STEPS:
        step(LA, "manual__second", params)
    assert waiting_deliveries(settings, LA) == []
