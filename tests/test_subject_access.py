"""``cme sar``: a subject access request answered honestly, on a real run.

A retained child's record is given back whole; a child whose data was deleted as matched and a
child never delivered get the same answer, byte for byte; the request's details are kept
nowhere (home, key store, Airflow) and, when nothing is held, not even in the answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.errors import UsageError
from cme_pipeline.evidence.ledger import read_entries
from cme_pipeline.home import open_home
from cme_pipeline.la import follow_up
from cme_pipeline.la.minimise import read_retained
from cme_pipeline.la.subject_access import AmbiguousRequest, find_records, fold_name, parse_request
from cme_pipeline.nhs_number import format_334, generate_test_numbers
from cme_pipeline.pipeline import steps
from cme_pipeline.simulate import NoiseConfig
from cme_pipeline.simulate.la import SimulatedLA, simulate_la
from cme_pipeline.simulate.package import package_extract
from cme_pipeline.simulate.population import FamilyConfig
from cme_pipeline.store import replace_register

LA = "W06000015"
SEED = 3
RUN = "manual__sar"
NEVER = {"forename": "Zebedee", "surname": "Quillfeather-Ystrad", "dob": "2015-02-03", "postcode": "LL99 9ZZ"}


def _run(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> SimulatedLA:
    """Registers and one delivery of 300 children, run through every matching step in-process.

    On the 1830s name tables: namesakes common enough that so small a run sends a child to review
    (a `possible` record), which the requests below need."""
    monkeypatch.setenv("CME_HOME", str(settings.home))
    sim = simulate_la(LA, 300, SEED, noise=NoiseConfig(families=FamilyConfig(names="1830s")))
    engine = open_home(settings).store(LA)
    for source, frame in sim.registers.items():
        replace_register(engine, LA, source, frame, as_of=dt.date.today())
    package_extract(settings, LA, sim.extract.to_csv(index=False).encode("utf-8"), extract_date=sim.extract_date)
    for step in steps.MATCHING_STEPS:
        step(LA, RUN, {"la_codes": [LA]})
    return sim


def _ask(settings: Settings, tmp_path: Path, name: str, details: dict[str, str],
         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[bool, str]:
    """Ask ``cme sar`` from a request file outside the home (or stdin); return (held, answer text)."""
    text = "".join(f'{k} = "{v}"\n' for k, v in details.items())
    out = tmp_path / "answers" / f"{name}.md"
    if monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(text))
        source = "-"
    else:
        source = str(tmp_path / "requests" / f"{name}.toml")
        Path(source).parent.mkdir(exist_ok=True)
        Path(source).write_text(text)
    capsys.readouterr()
    assert main(["--home", str(settings.home), "sar", "--la", LA, "--request", source, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed in (f"{out}: held\n", f"{out}: not held\n")  # the path and the finding, nothing else
    assert out.stat().st_mode & 0o777 == 0o600
    return printed.endswith(": held\n"), out.read_text()


def _demographics(row: pd.Series) -> dict[str, str]:
    return {k: str(row[k]) for k in ("forename", "surname", "dob", "postcode")}


def _needles(details: dict[str, str]) -> set[bytes]:
    """What of a request could be left behind, in the forms it would take (lower case; scans fold)."""
    out: set[bytes] = set()
    for key, value in details.items():
        if key == "nhs_number":
            digits = value.replace(" ", "")
            out |= {digits.encode(), format_334(digits).encode()}
        elif key == "postcode":
            out |= {value.lower().encode(), value.replace(" ", "").lower().encode()}
        else:
            out.add(value.lower().encode("utf-8"))
    return out


def _key_dirs(settings: Settings) -> list[Path]:
    uri = settings.keystore_uri
    if uri.startswith("file:"):
        return [Path(uri.removeprefix("file:"))]
    return [Path(os.environ["SOFTHSM2_CONF"]).parent / "tokens"]  # the SoftHSM2 token store


def _hits(roots: Iterable[Path], needles: set[bytes]) -> set[tuple[str, bytes]]:
    """(file, needle) for every needle in every file under the roots (case-insensitive, raw bytes)."""
    found = set()
    files = 0
    for root in roots:
        for path in (p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
            data = path.read_bytes().lower()
            files += 1
            found |= {(str(path), n) for n in needles if n in data}
    assert files, "the scan read no files"
    return found


def test_retained_children_get_their_record_and_everyone_else_one_identical_answer(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = _run(settings, monkeypatch)
    home = open_home(settings)
    today = dt.date.today()
    retained = read_retained(home, LA)
    unmatched = retained[retained["outcome"] == "unmatched"].iloc[0]
    (possible,) = [r for _, r in retained[retained["outcome"] == "possible"].iterrows()][:1]
    follow_up.resolve(home, LA, [(follow_up.ref_of(unmatched["delivery_id"], unmatched["health_record_id"]),
                                  "under_enquiry")], today)
    on_register = set(sim.truth.loc[sim.truth["registers"] != "", "nhs_number"])
    deleted = sim.extract[sim.extract["nhs_number"].isin(on_register - set(retained["nhs_number"]))].iloc[0]
    delivered = set(sim.extract["nhs_number"])
    never_nhs = next(n for n in generate_test_numbers(50, np.random.default_rng(777)) if n not in delivered)
    requests: dict[str, dict[str, str]] = {
        "retained_nhs": {"nhs_number": format_334(unmatched["nhs_number"])},
        # Case, spaces and diacritics do not matter; every other character does.
        "retained_demographics": {
            "forename": unicodedata.normalize("NFKD", unmatched["forename"]).upper(),
            "surname": f"  {unmatched['surname'].lower()} ", "dob": unmatched["dob"],
            "postcode": unmatched["postcode"].replace(" ", "").lower()},
        "possible_nhs": {"nhs_number": possible["nhs_number"]},
        "deleted_nhs": {"nhs_number": deleted["nhs_number"]},
        "deleted_demographics": _demographics(deleted),
        "never_nhs": {"nhs_number": never_nhs},
        "never_demographics": NEVER,
        "near_miss": {**_demographics(unmatched),
                      "dob": (dt.date.fromisoformat(unmatched["dob"]) + dt.timedelta(days=1)).isoformat()},
    }
    roots = [settings.home, *_key_dirs(settings)]
    needles = set().union(*(_needles(d) for d in requests.values()))
    before = _hits(roots, needles)
    # The scan sees plaintext where there is some: the deleted child's surname is on the LA's registers.
    assert (deleted["surname"].lower().encode() in {n for _, n in before})
    assert not {n for _, n in before} & (_needles(requests["never_nhs"]) | _needles(NEVER))

    answers = {name: _ask(settings, tmp_path, name, details, capsys,
                          monkeypatch if name == "never_nhs" else None)  # one through stdin
               for name, details in requests.items()}

    held = {name for name, (h, _) in answers.items() if h}
    assert held == {"retained_nhs", "retained_demographics", "possible_nhs"}
    record = answers["retained_nhs"][1]
    for shown in (format_334(unmatched["nhs_number"]), unmatched["surname"], unmatched["postcode"], unmatched["dob"],
                  unmatched["gp_practice_code"], f"Held until: {unmatched['retention_expiry'].isoformat()}",
                  f"`{unmatched['delivery_id']}`", f"run `{RUN}`", f"NHS extract of {sim.extract_date.isoformat()}",
                  "Review pending: no", f"Latest follow-up note: still under enquiry (recorded {today.isoformat()})"):
        assert shown in record
    assert record.count("### Record") == 1
    assert possible["nhs_number"] not in record and format_334(possible["nhs_number"]) not in record  # no other child
    # By NHS number or by name, date of birth and postcode: the same record (the reference differs).
    no_reference = re.compile(r"Answer reference: SAR-[0-9A-F]+\n")
    assert no_reference.sub("", record) == no_reference.sub("", answers["retained_demographics"][1])
    assert "Review pending: yes" in answers["possible_nhs"][1]
    assert possible["best_register_record_id"] not in answers["possible_nhs"][1]  # the register record is another's

    # Deleted as matched, never delivered, a near miss: one answer, byte for byte, holding no detail.
    not_held = {name: text for name, (h, text) in answers.items() if not h}
    assert len(set(not_held.values())) == 1
    text = next(iter(not_held.values()))
    assert "we hold no data about this child" in text
    certificate = json.loads(next((settings.evidence_dir(LA) / "certificates").glob("*.json")).read_text())
    destroyed = dt.datetime.fromisoformat(certificate["facts"]["data_key_destroyed_at"]).astimezone(dt.UTC).date()
    assert (f"| `{certificate['facts']['delivery_id']}` | {sim.extract_date.isoformat()} | {destroyed.isoformat()} |"
            in text)
    for name, answer in not_held.items():
        assert not {n for n in _needles(requests[name]) if n in answer.lower().encode()}, name

    # The details are nowhere they were not before: not the home, the key store or Airflow's files.
    after = _hits(roots, needles)
    assert after <= before
    assert not {n for _, n in after} & set().union(*(_needles({"nhs_number": d["nhs_number"]})
                                                     for d in requests.values() if "nhs_number" in d))

    entries = [e for e in read_entries(settings, LA) if e["event"] == "subject_access"]
    assert len(entries) == len(requests)
    for entry, name in zip(entries, requests, strict=True):  # in the order asked
        assert entry["run_id"].startswith("sar__")
        assert set(entry["facts"]) == {"held", "route", "answer_sha256"}
        answer_file = tmp_path / "answers" / f"{name}.md"
        assert entry["facts"]["answer_sha256"] == hashlib.sha256(answer_file.read_bytes()).hexdigest()
        assert entry["facts"]["held"] is (name in held)
        assert entry["facts"]["route"] == ("nhs_number" if "nhs_number" in requests[name] else "demographics")
    assert main(["--home", str(settings.home), "evidence", "verify", "--la", LA]) == 0

    # A delivery not yet processed is said to be unsearched, in every answer alike.
    package_extract(settings, LA, sim.extract.to_csv(index=False).encode("utf-8"), extract_date=sim.extract_date)
    held_now, waiting = _ask(settings, tmp_path, "waiting", requests["deleted_nhs"], capsys)
    assert not held_now and "1 delivery waiting to be processed" in waiting
    assert waiting == _ask(settings, tmp_path, "waiting_never", NEVER, capsys)[1]


BAD = [
    ("nhs_number = \"999 123 4560\"\n", "nhs_number", ["4560"]),  # a wrong check digit
    ("nhs_number = 99912\n", "nhs_number", ["99912"]),
    ("forename = Siân\nsurname = Price\ndob = 30/06/2018\npostcode = CF11 9QY\n", "dob", ["30/06", "Siân", "Price"]),
    ("forename = Siân\nsurname = Price\ndob = 2018-06-30\npostcode = PRICE1\n", "postcode", ["PRICE1", "Price"]),
    ("forename = \"Siân\"\ndob = 2018-06-30\npostcode = \"CF11 9QY\"\n", "surname", ["Siân", "CF11"]),
    ("nhs_number = \"9996387143\"\nsurname = \"Price\"\n", "not both", ["9996387143", "Price"]),
    ("Price = Siân\n", "not one of", ["Price", "Siân"]),
    ("Siân Price 2018-06-30\n", "line 1", ["Price", "2018"]),
    ("[child]\nsurname = \"Price\"\n", "not one of", ["Price", "child"]),
    ("surname = [\"Price\"]\n", "surname", ["Price"]),
    ("", "lacks forename, surname, dob, postcode", []),
]


def test_bad_requests_exit_2_naming_the_field_never_the_value(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "answer.md"
    request = tmp_path / "price_sian_sar.toml"  # officers name files after the child
    args = ["--home", str(settings.home), "sar", "--la", LA, "--request", str(request), "--out"]
    for text, field, values in BAD:
        request.write_text(text)
        capsys.readouterr()
        assert main([*args, str(out)]) == 2, field
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and field in err, (field, err)
        assert not [v for v in [*values, "price_sian"] if v in err], (field, err)
    request.write_bytes(b"surname = \"Pr\xe9ce\"\n")  # Latin-1, not UTF-8
    assert main([*args, str(out)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    request.unlink()
    assert main([*args, str(out)]) == 2
    assert "price_sian" not in capsys.readouterr().err
    request.write_text('nhs_number = "999 638 7143"\n')
    assert main([*args, str(settings.home / "answer.md")]) == 2  # the home is backed up: not there
    assert "outside the home" in capsys.readouterr().err
    out.write_text("an earlier answer\n")
    assert main([*args, str(out)]) == 2
    assert out.read_text() == "an earlier answer\n"
    assert not (settings.home / "answer.md").exists()
    assert not [e for e in read_entries(settings, LA) if e["event"] == "subject_access"]


def test_details_are_normalised_and_never_shown_by_a_request() -> None:
    assert fold_name(" Siân  ap Rhys ") == fold_name("SIAN APRHYS") == "sianaprhys"
    assert fold_name("O'Brien") != fold_name("OBrien")  # only case, spaces and diacritics are forgiven
    request = parse_request("forename = Siân\nsurname = ap Rhys\ndob = 2016-03-04\npostcode = cf24 4rj\n")
    assert (request.postcode, request.dob, request.route) == ("CF244RJ", dt.date(2016, 3, 4), "demographics")
    assert repr(request) == "SubjectRequest(route='demographics')"  # a stray log line shows no detail
    assert parse_request("nhs_number = 999-638-7143").nhs_number == "9996387143"
    assert parse_request('nhs_number = 9996387143\n').route == "nhs_number"  # an unquoted TOML number


def test_details_that_fit_two_children_are_refused_rather_than_showing_either() -> None:
    twins = pd.DataFrame({"nhs_number": ["9996387143", "9992202181"], "forename": ["Siân", "Sian"],
                          "surname": ["Rhys", "RHYS"], "dob": ["2016-03-04"] * 2, "postcode": ["CF24 4RJ"] * 2})
    request = parse_request("forename = Sian\nsurname = Rhys\ndob = 2016-03-04\npostcode = CF244RJ\n")
    with pytest.raises(AmbiguousRequest) as caught:
        find_records(twins, request)
    assert isinstance(caught.value, UsageError) and "Rhys" not in str(caught.value)
    assert list(find_records(twins, parse_request("nhs_number = 9992202181"))["surname"]) == ["RHYS"]
    assert find_records(twins.iloc[:0], request).empty
