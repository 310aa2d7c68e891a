"""Restricted records (the NHS "S flag"): their location never arrives, nothing we show places
them, the delivery suite holds the partner to it, and they are matched as well as anyone.

A restricted child's address, postcode and GP practice are what a family fleeing abuse must keep
from anyone who does not need them. The registers still hold these children (the school knows
where they live): that is the LA's own knowledge, and the scan below empties the registers
(after proving it sees them there) so that anything it finds must have come from elsewhere.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pytest
from fixtures_quality import EXTRACT_DATE, YEAR, GoodExtract
from softhsm import keystore_files

from cme_pipeline import matching
from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.errors import DeliveryRejected
from cme_pipeline.evidence.files import report_file
from cme_pipeline.home import open_home
from cme_pipeline.la.intake import open_delivery_file
from cme_pipeline.la.minimise import open_fields, read_retained, seal_fields
from cme_pipeline.la.restricted import WITHHELD, WITHHELD_FIELD
from cme_pipeline.la.review import export_pack, read_pack
from cme_pipeline.pipeline import steps
from cme_pipeline.quality import DeliveryInvalid, check_delivery, validate_delivery
from cme_pipeline.quality.runner import load_suite_spec
from cme_pipeline.schemas import (
    HEALTH_EXTRACT,
    HEALTH_LOCATION,
    RESTRICTED_CODES,
    TRUTH,
    register_columns,
)
from cme_pipeline.simulate import NoiseConfig, simulate_la
from cme_pipeline.simulate.la import SimulatedLA
from cme_pipeline.simulate.population import FamilyConfig
from cme_pipeline.simulate.wales import simulate_las, simulate_to_home
from cme_pipeline.store import replace_register

LA = "W06000015"
CHILDREN, SEED, RATE = 400, 5, 0.6  # about 240 restricted children in a small run
# The 1830s name tables: namesakes common enough that a small run sends children of both kinds to
# review, which the review pack's part of the test needs.
NOISE = NoiseConfig(families=FamilyConfig(names="1830s"))
RUN = "manual__restricted"
# A cautious threshold (allowed: between the 0.9 floor and 1) sends many children to review,
# restricted ones most (no location agreement to lift them), so the review pack holds plenty.
MATCH_THRESHOLD = 0.9999


# -- the real run -------------------------------------------------------------------------------


def _forms(value: str, *, postcode: bool) -> set[bytes]:
    """How a value could appear in a file: UTF-8 or JSON-escaped, lower case, a postcode without its space."""
    text = value.lower()
    forms = {text, json.dumps(text)[1:-1]}
    if postcode:
        forms |= {f.replace(" ", "") for f in forms}
    return {f.encode() for f in forms}


def _probes(sim: SimulatedLA) -> dict[bytes, str]:
    """Each restricted child's address line 1 and postcode as the NHS holds them -> what it is.

    A value an unrestricted child of the extract shares (a sibling-free neighbour's postcode, a
    common house-and-street line) arrives legitimately with that child, so it is not a probe.
    """
    unrestricted = sim.extract[sim.extract["restricted"] != "Y"]
    probes: dict[bytes, str] = {}
    for column in ("address_line1", "postcode"):
        shared = set(unrestricted[column])
        for value in set(sim.withheld[column]) - shared - {""}:
            probes.update(dict.fromkeys(_forms(value, postcode=column == "postcode"), column))
    return probes


def _files(roots: Iterable[Path], skip: Path) -> list[Path]:
    return [p for root in roots for p in sorted(root.rglob("*")) if p.is_file() and skip not in p.parents]


def _found(files: list[Path], probes: dict[bytes, str]) -> list[str]:
    """Where a probe occurs: file name and kind of value, never the value."""
    hits = []
    for path in files:
        data = path.read_bytes().lower()
        hits += [f"{path.name}: {kind}" for probe, kind in probes.items() if probe in data]
    return sorted(set(hits))


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _district(postcode: str) -> str:
    return postcode.split(" ")[0] if " " in postcode else postcode[:-3]


def _places(row: dict[str, str], values: Iterable[str]) -> list[str]:
    """The placing values (postcode, its district, address, GP practice, school) a row shows."""
    cells = " | ".join(row.values()).lower()
    return [v for v in values if v and re.search(rf"(?<![a-z0-9]){re.escape(v.lower())}(?![a-z0-9])", cells)]


def test_a_restricted_childs_location_never_arrives_and_no_output_places_them(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CME_HOME", str(settings.home))
    sim = next(simulate_las([LA], CHILDREN, SEED, noise=NOISE, restricted_rate=RATE))
    summary = simulate_to_home(settings, [LA], children=CHILDREN, seed=SEED, noise=NOISE, restricted_rate=RATE)[0]
    restricted = sim.extract["restricted"] == "Y"
    assert summary.restricted == int(restricted.sum()) >= 10
    assert (sim.extract.loc[restricted, list(HEALTH_LOCATION)] == "").all().all()
    truth = pd.read_csv(settings.partner_dir / "truth.csv", dtype=str, keep_default_na=False)
    assert tuple(truth.columns) == TRUTH and (truth["restricted"] == "Y").sum() == summary.restricted
    for step in steps.MATCHING_STEPS:
        step(LA, RUN, {"la_codes": [LA], "match_threshold": MATCH_THRESHOLD})
    home = open_home(settings)
    retained = read_retained(home, LA)
    held = retained[retained["restricted"] == "Y"]
    assert len(held) >= 10 and (held["outcome"] == "possible").sum() >= 5
    arrived = (held[list(HEALTH_LOCATION)].fillna("") != "").any().any()  # decrypted: what the LA holds
    assert not arrived, "a restricted child's location reached the retained set"

    # The officer's list: the withheld text where the address would be, no placing value.
    by_number = sim.withheld.set_index("nhs_number")
    assert main(["--home", str(settings.home), "retained", "list", "--la", LA, "--format", "csv"]) == 0
    listed = _csv_rows(capsys.readouterr().out)
    assert {r["restricted"] for r in listed} == {"Y", "N"}
    for row in (r for r in listed if r["restricted"] == "Y"):
        withheld = row["address_line1"] == WITHHELD and all(
            row[c] == WITHHELD_FIELD for c in HEALTH_LOCATION if c != "address_line1")
        assert withheld, "the retained list shows a restricted child's location"
        nhs = by_number.loc[row["nhs_number"]]
        shown = _places(row, [nhs["address_line1"], nhs["postcode"], _district(nhs["postcode"]), nhs["gp_practice_code"]])
        assert not shown, f"the retained list places a restricted child ({len(shown)} values)"
    assert main(["--home", str(settings.home), "retained", "list", "--la", LA]) == 0
    table = capsys.readouterr().out
    assert table.count(WITHHELD) == len(held) and "restricted" in table.splitlines()[0]

    # The review pack: the candidate register record's address, postcode and school are withheld.
    path, _ = export_pack(home, LA)
    pack = read_pack(home, LA, path)
    assert "register_school_code" not in pack.columns
    census = sim.registers["school_census"].set_index("record_id")
    candidates = retained.set_index("review_id")[["best_register", "best_register_record_id", "nhs_number"]]
    rows = 0
    for row in pack[pack["restricted"] == "Y"].to_dict("records"):
        withheld = (row["health_address"], row["register_address"]) == (WITHHELD, WITHHELD) and \
            (row["health_postcode"], row["register_postcode"]) == (WITHHELD_FIELD, WITHHELD_FIELD)
        assert withheld, "the review pack shows a restricted child's location"
        register, record_id, nhs = candidates.loc[row["review_id"]]
        placing = [by_number.loc[nhs, "postcode"], _district(by_number.loc[nhs, "postcode"]),
                   by_number.loc[nhs, "address_line1"], by_number.loc[nhs, "gp_practice_code"]]
        candidate = sim.registers[register].set_index("record_id").loc[record_id]
        placing += [candidate["address"], candidate["postcode"], _district(candidate["postcode"] or "")]
        if register == "school_census":
            placing.append(census.loc[record_id, "school_code"])
        shown = _places({k: str(v) for k, v in row.items()}, placing)
        assert not shown, f"the review pack places a restricted child ({len(shown)} values)"
        rows += 1
    assert rows >= 5
    unrestricted = pack[pack["restricted"] == "N"]
    assert len(unrestricted) and (unrestricted["register_address"] != WITHHELD).all()

    # The DPO report counts them, and nothing more.
    figures = dict(re.findall(r'data-figure="(restricted_\w+)">([0-9,]+)<', report_file(settings, LA, RUN).read_text()))
    assert figures == {"restricted_received": str(summary.restricted), "restricted_retained": str(len(held))}

    # A byte scan of everything the LA side holds. First it must see the registers' copies...
    probes = _probes(sim)
    assert len(set(probes.values())) == 2 and len(probes) >= 20
    roots = [settings.home, keystore_files(settings.keystore_uri)]
    assert _found(_files(roots, settings.partner_dir), probes)
    # ...then, with the registers (the schools' own knowledge) emptied, it finds nothing at all.
    engine = home.store(LA)
    for source in sim.registers:
        replace_register(engine, LA, source, pd.DataFrame(columns=list(register_columns(source))),
                         as_of=dt.date.today())
    assert _found(_files(roots, settings.partner_dir), probes) == []


def test_a_schema_1_delivery_is_refused_before_anything_is_read(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cme_pipeline.simulate import package

    sim = simulate_la(LA, children=30, seed=2, year_start=YEAR)
    old = sim.extract[list(HEALTH_EXTRACT[:-2])].to_csv(index=False).encode()  # before restricted
    monkeypatch.setattr(package, "EXTRACT_SCHEMA_VERSION", "cme-health-extract/1")
    path = package.package_extract(settings, LA, old, extract_date=EXTRACT_DATE)
    with pytest.raises(DeliveryRejected, match="schema version is not cme-health-extract/2 or cme-health-extract/3") as caught:
        open_delivery_file(open_home(settings), LA, path, YEAR)
    assert caught.value.check == "manifest"


# -- the contract and the delivery suite ----------------------------------------------------------


def _with_restricted(good: GoodExtract, rows: Iterable[int]) -> pd.DataFrame:
    frame = good.frame.copy()
    for i in rows:
        frame.loc[i, "restricted"] = "Y"
        frame.loc[i, list(HEALTH_LOCATION)] = ""
    return frame


def _check(frame: pd.DataFrame):  # noqa: ANN202
    return check_delivery(frame, manifest_rows=len(frame), year_start=YEAR, extract_date=EXTRACT_DATE)


def test_a_restricted_row_without_location_passes_and_unrestricted_rows_still_need_theirs(
    good_extract: GoodExtract,
) -> None:
    assert _check(_with_restricted(good_extract, [0, 5])).success
    frame = _with_restricted(good_extract, [0])
    frame.loc[3, "restricted"] = ""  # empty means N
    frame.loc[3, ["address_line1", "postcode", "gp_practice_code"]] = ""
    failed = {e.name: e.rows for e in _check(frame).failed}
    assert failed == {"address_line1_present": (4,), "postcode_present": (4,), "gp_practice_code_present": (4,)}


@pytest.mark.parametrize("column", HEALTH_LOCATION)
def test_a_delivery_carrying_a_location_on_a_restricted_row_fails_naming_column_and_row(
    good_extract: GoodExtract, column: str
) -> None:
    frame = _with_restricted(good_extract, [2, 7])
    value = str(good_extract.frame.loc[7, column]) or str(good_extract.frame.loc[7, "postcode"])
    frame.loc[7, column] = value
    with pytest.raises(DeliveryInvalid) as caught:
        validate_delivery(frame, manifest_rows=len(frame), year_start=YEAR, extract_date=EXTRACT_DATE)
    message = str(caught.value)
    assert f"{column}_withheld_when_restricted in column {column} at row 8 " in message
    assert value not in message and value not in json.dumps(caught.value.details)
    assert caught.value.check == f"suite:delivery:{column}_withheld_when_restricted"


def test_the_restricted_flag_is_y_n_or_empty(good_extract: GoodExtract) -> None:
    spec = {e["meta"]["id"]: e for e in load_suite_spec("delivery")["expectations"]}
    assert tuple(spec["restricted_code"]["kwargs"]["value_set"]) == RESTRICTED_CODES
    frame = good_extract.frame.copy()
    frame.loc[1, "restricted"] = ""
    frame.loc[4, "restricted"] = "yes"
    outcome = _check(frame)
    assert [(e.name, e.column, e.rows) for e in outcome.failed] == [("restricted_code", "restricted", (5,))]


def test_a_record_sealed_under_an_earlier_schema_opens_without_the_fields_added_since() -> None:
    record = dict.fromkeys(HEALTH_EXTRACT, "x")
    opened = open_fields(seal_fields(record, HEALTH_EXTRACT[:-2]), HEALTH_EXTRACT)
    assert opened["restricted"] is None and opened["previous_postcode"] is None and opened["postcode"] == "x"
    opened = open_fields(seal_fields(record, HEALTH_EXTRACT[:-1]), HEALTH_EXTRACT)  # schema 2
    assert opened["restricted"] == "x" and opened["previous_postcode"] is None
    with pytest.raises(ValueError):  # any other shortfall is still an error
        open_fields(seal_fields(record, HEALTH_EXTRACT[:-3]), HEALTH_EXTRACT)


# -- matching without a location -------------------------------------------------------------------


def test_restricted_children_are_matched_nearly_as_often_as_the_others() -> None:
    """Recall of children on a register (matched to one of their own records), by group."""
    sim = simulate_la(LA, children=3000, seed=7, year_start=YEAR, restricted_rate=0.05)
    outcomes = matching.match_registers(
        matching.health_to_canonical(sim.extract),
        {s: matching.register_to_canonical(f) for s, f in sim.registers.items()},
    )
    truth = sim.register_truth[sim.register_truth["nhs_number"] != ""]
    own = set(zip(truth["nhs_number"], truth["register"], truth["record_id"], strict=True))
    frame = outcomes.assign(nhs_number=sim.extract["nhs_number"].to_numpy(),
                            restricted=sim.extract["restricted"].to_numpy())
    frame = frame[frame["nhs_number"].isin(set(truth["nhs_number"]))]
    matched = frame["outcome"] == "matched"
    frame["right"] = [m and (n, r, i) in own for m, n, r, i in zip(
        matched, frame["nhs_number"], frame["register"], frame["register_record_id"], strict=True)]
    restricted = frame[frame["restricted"] == "Y"]
    others = frame[frame["restricted"] != "Y"]
    assert len(restricted) >= 50
    recall_restricted, recall_others = restricted["right"].mean(), others["right"].mean()
    assert recall_restricted >= 0.9 * recall_others, (recall_restricted, recall_others)
    # and no restricted child is matched to someone else's record
    assert (restricted["right"] == (restricted["outcome"] == "matched")).all()
