"""End to end on the LA's own files: registers imported from exports, a delivery packaged by the
partner command, ``cme run``, and the children on a register matched.

Nothing here uses the simulator's way into the store: the four registers reach it only through
``cme registers import`` (a census as UTF-8-with-BOM CSV with split names and dd/mm/yyyy dates,
EOTAS and CME as .xlsx, EHE as Excel's UTF-16 "Unicode text" with a mapping file), and the
extract only through ``cme partner package``. A register past the age limit holds the run back
with the delivery still waiting; a fresh import lets it through.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook

from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.home import open_home
from cme_pipeline.la.minimise import list_retained
from cme_pipeline.runs import waiting_deliveries
from cme_pipeline.simulate.la import simulate_la
from cme_pipeline.store import load_registers

LA = "W06000014"  # Vale of Glamorgan
CHILDREN = 700


def _uk_date(iso: object) -> str:
    return dt.date.fromisoformat(str(iso)).strftime("%d/%m/%Y") if isinstance(iso, str) and iso else ""


def _census_csv(frame: pd.DataFrame, path: Path) -> None:
    out = io.StringIO(newline="")
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["UPN", "Legal Surname", "Legal Forename", "Middle Names", "Preferred Forename", "Date of Birth",
                "Gender", "Address", "Postcode", "LAESTAB", "School Type", "Enrolment Status", "Ethnicity", "SEN"])
    for r in frame.itertuples(index=False):
        w.writerow([r.record_id, f"{r.surname} ", r.forename, r.middle_names or "", r.forename, _uk_date(r.dob),
                    {"M": "Male", "F": "Female"}.get(r.sex, "Unknown"), r.address or "", r.postcode or "",
                    r.school_code, r.school_type.title(), r.enrolment_status, "WBRI", "N"])
    path.write_bytes(out.getvalue().encode("utf-8-sig"))


def _xlsx(frame: pd.DataFrame, path: Path, headings: dict[str, str]) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append([*headings.values(), "Keyworker notes"])
    for r in frame.to_dict("records"):
        row = [dt.datetime.fromisoformat(r[c]) if c in ("dob", "referral_date", "notified_date") and r[c] else r[c]
               for c in headings]
        sheet.append([*row, "confidential"])
    book.save(path)


def _ehe_unicode_text(frame: pd.DataFrame, path: Path, mapping: Path) -> None:
    out = io.StringIO(newline="")
    w = csv.writer(out, delimiter="\t", lineterminator="\r\n")
    w.writerow(["Ref", "Child forename", "Child surname", "Birth date", "Gender", "Home address", "Home postcode",
                "EHE notification received"])
    for r in frame.itertuples(index=False):
        w.writerow([r.record_id, r.forename, r.surname, _uk_date(r.dob), r.sex or "", r.address or "",
                    r.postcode or "", _uk_date(r.notified_date)])
    path.write_bytes(out.getvalue().encode("utf-16"))
    mapping.write_text('register = "ehe"\ndate_format = "%d/%m/%Y"\n[columns]\nrecord_id = "Ref"\n'
                       'forename = "Child forename"\nsurname = "Child surname"\ndob = "Birth date"\nsex = "Gender"\n'
                       'address = ["Home address"]\npostcode = "Home postcode"\n'
                       'notified_date = "EHE notification received"\n', encoding="utf-8")


def test_registers_from_files_then_a_packaged_delivery_then_a_run_matches_the_registered_children(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CME_HOME", str(settings.home))
    sim = simulate_la(LA, CHILDREN, seed=23)
    home = ["--home", str(settings.home)]
    person = {"record_id": "Reference", "forename": "Forename", "surname": "Surname", "dob": "Date of Birth",
              "sex": "Gender", "address": "Address", "postcode": "Postcode"}
    _census_csv(sim.registers["school_census"], tmp_path / "census.csv")
    _xlsx(sim.registers["eotas"], tmp_path / "eotas.xlsx", person | {"provision": "Provision"})
    _xlsx(sim.registers["cme"], tmp_path / "cme.xlsx", person | {"referral_date": "Date of Referral"})
    _ehe_unicode_text(sim.registers["ehe"], tmp_path / "ehe.txt", tmp_path / "ehe.toml")
    imports = {"school_census": ["census.csv"], "eotas": ["eotas.xlsx"], "cme": ["cme.xlsx"],
               "ehe": ["ehe.txt", "--mapping", str(tmp_path / "ehe.toml")]}
    long_ago = (dt.date.today() - dt.timedelta(days=settings.register_max_days + 5)).isoformat()
    for source, (name, *extra) in imports.items():
        as_of = ["--as-of", long_ago] if source == "ehe" else []
        assert main([*home, "registers", "import", "--la", LA, "--register", source, str(tmp_path / name),
                     *extra, *as_of]) == 0, source
    loaded = load_registers(open_home(settings).store(LA), LA)
    for source, frame in sim.registers.items():
        assert sorted(loaded[source]["record_id"]) == sorted(frame["record_id"]), source
        assert sorted(loaded[source]["dob"]) == sorted(frame["dob"]), source

    plain = tmp_path / "extract.csv"
    sim.extract.to_csv(plain, index=False)
    assert main([*home, "partner", "package", str(plain), "--la", LA,
                 "--extract-date", sim.extract_date.isoformat()]) == 0
    capsys.readouterr()
    # The EHE register was taken too long ago: the run refuses, and the delivery waits, encrypted.
    assert main([*home, "run", "--la", LA]) == 4
    assert "the ehe register was taken on" in capsys.readouterr().err
    assert len(waiting_deliveries(settings, LA)) == 1
    assert main([*home, "registers", "import", "--la", LA, "--register", "ehe", str(tmp_path / "ehe.txt"),
                 "--mapping", str(tmp_path / "ehe.toml")]) == 0
    assert main([*home, "run", "--la", LA]) == 0
    assert waiting_deliveries(settings, LA) == []

    retained = set(list_retained(open_home(settings), LA)["nhs_number"])
    on_register = set(sim.truth.loc[sim.truth["registers"] != "", "nhs_number"])
    off_register = set(sim.truth["nhs_number"]) - on_register
    assert off_register <= retained, "a child on no register was matched (and their data deleted)"
    matched = on_register - retained
    assert len(matched) >= 0.95 * len(on_register), (len(matched), len(on_register))
