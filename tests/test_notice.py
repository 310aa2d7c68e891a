"""`cme notice`: the privacy notice states the configured periods and contacts, in English and Welsh."""

from __future__ import annotations

import dataclasses
import re
import string
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from cme_pipeline.areas import LA_NAMES
from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.errors import ConfigError
from cme_pipeline.la import notice as notice_module
from cme_pipeline.la.notice import (
    NoticeConfig,
    load_notice_config,
    render_notice,
    render_notice_html,
)
from cme_pipeline.la.notice_text import (
    DAYS_LABELS,
    DAYS_UNIT,
    FIELD_CATEGORIES,
    LA_NAMES_CY,
    LANGUAGES,
    WORDING,
    Language,
)
from cme_pipeline.schemas import HEALTH_EXTRACT_FIELDS, Field

CARDIFF, GWYNEDD = "W06000015", "W06000002"
PERIODS = {"retention_days", "review_days", "quarantine_days"}

CONFIG_A = """\
controller_contact = "County Hall, Cardiff CF10 4UW; 029 2087 2000"
dpo_name = "Alys Evans"
dpo_email = "dpo@cardiff.example.gov.uk"
dpo_address = \"\"\"Data Protection Officer,
County Hall, Cardiff CF10 4UW\"\"\"
cme_officer_contact = "cme@cardiff.example.gov.uk"
"""
CONFIG_B = """\
controller_name = "Gwynedd Council"
controller_contact = "Council Offices, Caernarfon LL55 1SH"
dpo_name = "Gareth Hughes"
dpo_email = "dpo@gwynedd.example.llyw.cymru"
dpo_address = "Swyddfeydd y Cyngor, Caernarfon LL55 1SH"

[cy]
controller_name = "Cyngor Gwynedd"
controller_contact = "Swyddfeydd y Cyngor, Caernarfon LL55 1SH"
"""


def config_file(tmp_path: Path, text: str, name: str = "notice.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def stated_days(notice: str, language: Language) -> dict[str, int]:
    """The number of days the notice gives after each period's label (``**label:** N days``)."""
    stated = {}
    for setting, label in DAYS_LABELS[language].items():
        hits = re.findall(rf"\*\*{re.escape(label)}:\*\* (\d+) {DAYS_UNIT[language]}\b", notice)
        assert len(hits) == 1, (language, label, hits)
        stated[setting] = int(hits[0])
    return stated


def assert_periods_match(notice: str, settings: Settings, language: Language) -> None:
    """Fails when a period in the notice is not the configured one (say a hard-coded 90)."""
    assert stated_days(notice, language) == {s: getattr(settings, s) for s in PERIODS}


# -- the library ---------------------------------------------------------------------------------

def test_two_las_with_different_settings_state_their_own_values_in_both_languages(
        settings: Settings, tmp_path: Path) -> None:
    cardiff = (CARDIFF, settings, load_notice_config(config_file(tmp_path, CONFIG_A, "a.toml")))
    gwynedd = (GWYNEDD, dataclasses.replace(settings, retention_days=60, review_days=10, quarantine_days=21,
                                            register_max_days=200),
               load_notice_config(config_file(tmp_path, CONFIG_B, "b.toml")))
    assert (settings.retention_days, settings.review_days) == (90, 14)  # the defaults differ from Gwynedd's
    notices = {(la, lang): render_notice(s, la, c, lang) for la, s, c in (cardiff, gwynedd) for lang in LANGUAGES}
    for la, la_settings, config in (cardiff, gwynedd):
        other = gwynedd[2] if la == CARDIFF else cardiff[2]
        for lang in LANGUAGES:
            text = notices[la, lang]
            assert_periods_match(text, la_settings, lang)
            assert "{" not in text and "}" not in text  # every placeholder filled
            unit = DAYS_UNIT[lang]
            assert f"{la_settings.register_max_days} {unit}" in text
            assert f"{la_settings.retention_days} {unit} " in text.split(DAYS_LABELS[lang]["review_days"])[1]
            for key in ("controller_contact", "dpo_name", "dpo_address", "cme_officer_contact"):
                value = config.value(key, lang)
                if value is not None:
                    assert value in text, (la, lang, key)
            assert config.dpo_email in text
            assert other.dpo_name not in text and other.dpo_email not in text
            assert (LA_NAMES_CY if lang == "cy" else LA_NAMES)[la] in text
    assert "Cardiff Local Authority" in notices[CARDIFF, "en"]
    assert "Awdurdod Lleol Caerdydd" in notices[CARDIFF, "cy"]
    assert "Gwynedd Council" in notices[GWYNEDD, "en"] and "Cyngor Gwynedd" not in notices[GWYNEDD, "en"]
    assert "Cyngor Gwynedd" in notices[GWYNEDD, "cy"] and "Gwynedd Council" not in notices[GWYNEDD, "cy"]
    assert "Hysbysiad preifatrwydd" in notices[GWYNEDD, "cy"] and "Eich hawliau" in notices[GWYNEDD, "cy"]


def test_the_period_check_fails_when_the_notice_disagrees_with_the_settings(
        settings: Settings, tmp_path: Path) -> None:
    config = load_notice_config(config_file(tmp_path, CONFIG_A))
    for setting in sorted(PERIODS):
        changed = dataclasses.replace(settings, **{setting: getattr(settings, setting) + 7})
        for lang in LANGUAGES:
            stale = render_notice(settings, CARDIFF, config, lang)
            with pytest.raises(AssertionError):
                assert_periods_match(stale, changed, lang)
            assert_periods_match(render_notice(changed, CARDIFF, config, lang), changed, lang)


def test_every_number_of_days_in_the_notice_is_a_configured_one(settings: Settings, tmp_path: Path) -> None:
    odd = dataclasses.replace(settings, retention_days=61, review_days=9, quarantine_days=23, register_max_days=199)
    config = load_notice_config(config_file(tmp_path, CONFIG_A))
    for lang in LANGUAGES:
        for text in (render_notice(odd, CARDIFF, config, lang), render_notice_html(odd, CARDIFF, config, lang)):
            days = {int(n) for n in re.findall(rf"(\d+) {DAYS_UNIT[lang]}\b", text)}
            assert days == {61, 9, 23, 199}, lang


def test_the_categories_are_the_extract_contract_and_a_new_field_stops_the_notice(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_notice_config(config_file(tmp_path, CONFIG_A))
    for lang in LANGUAGES:
        assert set(FIELD_CATEGORIES[lang]) == {f.name for f in HEALTH_EXTRACT_FIELDS}
        text = render_notice(settings, CARDIFF, config, lang)
        for description in FIELD_CATEGORIES[lang].values():
            assert f"- {description}\n" in text
    monkeypatch.setattr(notice_module, "HEALTH_EXTRACT_FIELDS", (*HEALTH_EXTRACT_FIELDS, Field("ethnicity")))
    with pytest.raises(ConfigError, match="ethnicity"):
        render_notice(settings, CARDIFF, config, "en")


def test_both_languages_say_the_same_things() -> None:
    def placeholders(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    assert WORDING["en"].keys() == WORDING["cy"].keys()
    for key in WORDING["en"]:
        assert placeholders(WORDING["en"][key]) == placeholders(WORDING["cy"][key]), key
    for lang in LANGUAGES:
        assert set(DAYS_LABELS[lang]) == PERIODS
    assert LA_NAMES_CY.keys() == LA_NAMES.keys()
    assert [LA_NAMES_CY[c] for c in ("W06000015", "W06000014", "W06000001", "W06000011", "W06000022")] == [
        "Caerdydd", "Bro Morgannwg", "Ynys Môn", "Abertawe", "Casnewydd"]


def test_configured_values_cannot_inject_markup(settings: Settings, tmp_path: Path) -> None:
    config = dataclasses.replace(load_notice_config(config_file(tmp_path, CONFIG_A)),
                                 dpo_name="<script>alert(1)</script> *Evans* [x](y)")
    markdown = render_notice(settings, CARDIFF, config, "en")
    assert "<script>" not in markdown and r"\<script\>" in markdown and r"\*Evans\*" in markdown
    page = render_notice_html(settings, CARDIFF, config, "cy")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.startswith("<!DOCTYPE html>") and '<html lang="cy">' in page


def test_notice_config_keeps_english_where_no_welsh_form_is_given(tmp_path: Path) -> None:
    config = load_notice_config(config_file(tmp_path, CONFIG_B))
    assert isinstance(config, NoticeConfig)
    assert config.value("dpo_name", "cy") == config.value("dpo_name", "en") == "Gareth Hughes"
    assert config.value("controller_name", "cy") == "Cyngor Gwynedd"
    assert load_notice_config(config_file(tmp_path, CONFIG_A)).dpo_address == (
        "Data Protection Officer, County Hall, Cardiff CF10 4UW")


# -- the command ---------------------------------------------------------------------------------

def cme(settings: Settings, *args: str) -> int:
    return main(["--home", str(settings.home), "notice", "--la", CARDIFF, *args])


def test_cli_writes_both_languages_0600_and_prints_the_paths(
        settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    config_file(settings.la_dir(CARDIFF), CONFIG_A)  # the default place: la/<code>/notice.toml
    assert cme(settings) == 0
    out_dir = settings.la_dir(CARDIFF) / "notices"
    expected = [out_dir / f"privacy-notice-{lang}.{ext}" for lang in LANGUAGES for ext in ("md", "html")]
    assert capsys.readouterr().out.splitlines() == [str(p) for p in expected]
    for path in expected:
        assert path.stat().st_mode & 0o777 == 0o600
        text = path.read_text(encoding="utf-8")
        assert "Alys Evans" in text and "dpo@cardiff.example.gov.uk" in text
    for lang in LANGUAGES:
        assert_periods_match((out_dir / f"privacy-notice-{lang}.md").read_text(encoding="utf-8"), settings, lang)


def test_cli_config_and_out_options(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = config_file(tmp_path, CONFIG_B, "gwynedd-style.toml")
    assert cme(settings, "--config", str(source), "--out", str(tmp_path / "out")) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert "Cyngor Gwynedd" in (tmp_path / "out" / "privacy-notice-cy.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("edit", "named"), [
    (lambda t: t.replace('dpo_email = "dpo@cardiff.example.gov.uk"\n', ""), "dpo_email is missing"),
    (lambda t: t.replace('dpo_name = "Alys Evans"', 'dpo_name = "  "'), "dpo_name"),
    (lambda t: t + 'dpo_emial = "x@y.z"\n', "dpo_emial"),
    (lambda t: t + '[cy]\ndpo_email = "x@y.z"\n', "cy.dpo_email"),
    (lambda t: t.replace('"dpo@cardiff.example.gov.uk"', '"dpo at cardiff"'), "dpo_email"),
    (lambda t: t.replace('dpo_name = "Alys Evans"', "dpo_name = 7"), "dpo_name"),
    (lambda t: t + "dpo_name = \n", "not valid TOML"),
])
def test_cli_refuses_a_bad_config_with_one_line_naming_key_and_file(
        settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable[[str], str],
        named: str) -> None:
    source = config_file(tmp_path, edit(CONFIG_A))
    assert cme(settings, "--config", str(source)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1 and named in captured.err and str(source) in captured.err
    assert "Alys" not in captured.err  # a value is never echoed
    assert not (settings.la_dir(CARDIFF) / "notices").exists()


def test_cli_without_config_points_at_the_example(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cme(settings) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--example-config" in err and "notice.toml" in err


def test_cli_example_config_is_refused_until_filled_in(
        settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cme(settings, "--example-config") == 0
    example = capsys.readouterr().out
    parsed = tomllib.loads(example)
    assert {"controller_contact", "dpo_name", "dpo_email", "dpo_address"} <= parsed.keys()
    target = settings.la_dir(CARDIFF) / "notice.toml"
    assert str(target) in example
    config_file(target.parent, example)
    assert cme(settings) == 2
    assert "controller_contact" in capsys.readouterr().err
    filled = (example.replace('controller_contact = ""', 'controller_contact = "County Hall"')
              .replace('dpo_name = ""', 'dpo_name = "Alys Evans"')
              .replace('dpo_email = ""', 'dpo_email = "dpo@cardiff.example.gov.uk"')
              .replace('dpo_address = ""', 'dpo_address = "County Hall, Cardiff"'))
    config_file(target.parent, filled)
    assert cme(settings) == 0
    assert "County Hall" in (settings.la_dir(CARDIFF) / "notices" / "privacy-notice-en.md").read_text(encoding="utf-8")
