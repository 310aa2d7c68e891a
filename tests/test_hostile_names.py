"""Hostile names through the whole pipeline: stored exactly, shown to people defused.

Names carrying SQL, a formula, HTML/script, a right-to-left override, a terminal escape and a
name at the length limit go in a real delivery (the delivery suite rejects only a name that
*starts* like a formula, which is a bad delivery of its own). They must pass every step, be held
byte for byte (encrypted), reach the CME officer's list and the review pack with nothing able to
act on a terminal, spreadsheet or browser, and never reach the DPO report at all.

The run (delivery opening, minimising, review pack sealing, evidence signing) is made once per key
store, ``[file]`` and ``[pkcs11]`` (a SoftHSM2 token, selected in the environment for the whole
module, so the steps and the ``cme`` commands find it too).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from softhsm import use_keystore

from cme_pipeline.cli import main
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise
from cme_pipeline.pipeline import steps
from cme_pipeline.quality.extract_csv import MAX_FIELD_CHARS
from cme_pipeline.runs import RunPaths, read_state
from cme_pipeline.schemas import HEALTH_EXTRACT
from cme_pipeline.simulate import simulate_la
from cme_pipeline.simulate.package import package_extract
from cme_pipeline.store import replace_register

LA = "W06000015"
RUN = "manual__hostile"
FORMULA = '=HYPERLINK("http://evil.example","x")'
HOSTILE_SURNAMES = {
    "sql": "O'Neill'); DROP TABLE retained;--",
    "formula inside": f"Smith {FORMULA}",
    "html": "<script>alert('cme')</script>",
    "right-to-left override": "Jones\u202etxt.exe",
    "terminal escape": "Evans\x1b[2J\x1b[31m",
    "at the length limit": "Ll" * (MAX_FIELD_CHARS // 2),
}
# Pieces that must never reach the DPO report (it holds no names at all).
NEVER_IN_REPORT = ("DROP TABLE", "evil.example", "alert(", "txt.exe", "\x1b", "Ll" * 20)


@dataclass(frozen=True)
class HostileRun:
    """A finished run whose delivery carried hostile names, and where they went."""

    settings: Settings
    hostile: pd.DataFrame  # the unregistered children given hostile surnames
    forged_forenames: list[str]  # registered children whose health forename is a script tag


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory, module_keystore_backend: str) -> Iterator[HostileRun]:
    with pytest.MonkeyPatch.context() as keystore:  # for the module's tests: the CLI reads it too
        env = use_keystore(keystore, module_keystore_backend)
        yield _hostile_run(tmp_path_factory.mktemp(f"hostile-{module_keystore_backend}") / "home", env)


def _hostile_run(home: Path, env: dict[str, str]) -> HostileRun:
    settings = load_settings(home, environ=env)
    sim = simulate_la(LA, children=400, seed=8, year_start=2026)
    extract = sim.extract[list(HEALTH_EXTRACT)].reset_index(drop=True).copy()
    truth = sim.truth.set_index("nhs_number")
    unregistered = [i for i, n in enumerate(extract["nhs_number"]) if truth.loc[n, "registers"] == ""]
    for i, surname in zip(unregistered, HOSTILE_SURNAMES.values(), strict=False):
        extract.loc[i, "surname"] = surname
    hostile = extract.iloc[unregistered[: len(HOSTILE_SURNAMES)]].copy()
    assert len(hostile) == len(HOSTILE_SURNAMES)

    # Two children on the school census: a script tag as their health forename and control
    # characters in their middle name, a formula as their register middle name, so the review
    # pack has hostile text on both sides.
    census = sim.registers["school_census"].copy()
    on_census = sim.register_truth[sim.register_truth["register"] == "school_census"]
    on_census = on_census[on_census["noise"].fillna("") == ""].head(2)
    forged = []
    middles = ("Ann\u202etxt.exe", "Mai\x1b[2J")
    for nhs, record_id, middle in zip(on_census["nhs_number"], on_census["record_id"], middles, strict=True):
        row = extract.index[extract["nhs_number"] == nhs][0]
        extract.loc[row, ["forename", "middle_names"]] = ["<script>alert('cme')</script>", middle]
        census.loc[census["record_id"] == record_id, "middle_names"] = FORMULA
        forged.append(nhs)
    assert len(forged) == 2

    engine = open_home(settings).store(LA)
    try:
        for source, frame in {**sim.registers, "school_census": census}.items():
            replace_register(engine, LA, source, frame, as_of=dt.date.today())
    finally:
        engine.dispose()
    package_extract(settings, LA, extract.to_csv(index=False).encode(), extract_date=sim.extract_date)

    # Every pair at or above 0.5 goes to review, so the forged pairs land in the pack.
    params = {"la_codes": [LA], "match_threshold": 1.0, "possible_threshold": 0.5}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CME_HOME", str(home))
        for step in ("open_delivery", "check_registers", "match", "minimise", "check_retained", "evidence"):
            getattr(steps, step)(LA, RUN, params)
    return HostileRun(settings, hostile, forged)


def _cli(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["--home", str(settings.home), *argv]) == 0
    return capsys.readouterr().out


def test_hostile_names_are_held_exactly(hostile_run: HostileRun) -> None:
    retained = minimise.list_retained(open_home(hostile_run.settings), LA, RUN).set_index("nhs_number")
    for nhs, surname in zip(hostile_run.hostile["nhs_number"], hostile_run.hostile["surname"], strict=True):
        assert retained.loc[nhs, "outcome"] == "unmatched"
        assert retained.loc[nhs, "surname"] == surname  # the SQL text is data, nothing ran
    assert set(hostile_run.forged_forenames) <= set(retained.index)


def test_the_officers_list_shows_control_characters_as_escapes(
    hostile_run: HostileRun, capsys: pytest.CaptureFixture[str]
) -> None:
    for fmt in ("table", "csv"):
        out = _cli(hostile_run.settings, capsys, "retained", "list", "--la", LA, "--format", fmt)
        assert "\u202e" not in out and "\x1b" not in out, fmt
        assert "Jones\\u202etxt.exe" in out and "Evans\\u001b[2J" in out, fmt
        assert HOSTILE_SURNAMES["sql"] in out and HOSTILE_SURNAMES["at the length limit"] in out, fmt
    rows = pd.read_csv(pd.io.common.StringIO(out), dtype=str, keep_default_na=False)
    assert not rows.map(lambda v: v.startswith(("=", "+", "@"))).any().any()


def test_the_review_pack_defuses_formulas_script_and_bidi(
    hostile_run: HostileRun, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = hostile_run.settings
    _cli(settings, capsys, "review", "export", "--la", LA)
    pack = next(settings.reports_dir(LA).glob("review-*.cmereview"))
    shown = _cli(settings, capsys, "review", "show", str(pack), "--la", LA)
    rows = pd.read_csv(pd.io.common.StringIO(shown), dtype=str, keep_default_na=False)
    forged = rows[rows["health_forename"] == "<script>alert('cme')</script>"]
    assert len(forged) == 2, "the forged pairs did not reach the review pack"
    assert (forged["register_middle_names"] == "'" + FORMULA).all()
    assert sorted(forged["health_middle_names"]) == ["Ann\\u202etxt.exe", "Mai\\u001b[2J"]
    assert not rows.map(lambda v: v.startswith(("=", "+", "@"))).any().any()
    page = _cli(settings, capsys, "review", "show", str(pack), "--la", LA, "--format", "html")
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;cme&#x27;)&lt;/script&gt;" in page
    assert "\u202e" not in page and "\x1b" not in page


def test_the_dpo_report_holds_no_name_at_all(hostile_run: HostileRun) -> None:
    state = read_state(RunPaths(hostile_run.settings, LA, RUN))
    html = Path(state["report"]).read_text(encoding="utf-8")
    assert str(state["received"]) in html
    assert not [piece for piece in NEVER_IN_REPORT if piece in html]
