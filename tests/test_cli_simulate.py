"""`cme simulate` and `cme partner package` from the command line.

The commands that write keys (the LA's receiving keys and pin, sealed deliveries) run once per key
store, ``[file]`` and ``[pkcs11]``. The two that fail on their arguments run on the ``file:`` key
store only: they stop before any key is opened, so the backend cannot change what they check.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from softhsm import keystore_files, use_keystore

from cme_pipeline.cli import main
from cme_pipeline.config import load_settings
from cme_pipeline.home import open_home
from cme_pipeline.store import load_registers


def test_simulate_writes_registers_deliveries_and_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keystore_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = use_keystore(monkeypatch, keystore_backend)  # the command reads it from the environment
    home = tmp_path / "home"
    assert main(["--home", str(home), "simulate", "--la", "W06000015,W06000002", "--children", "3000", "--seed", "4"]) == 0
    settings = load_settings(home, environ=env)
    truth = pd.read_csv(home / "partner" / "truth.csv", dtype=str, keep_default_na=False)
    assert {"nhs_number", "la_code", "registers"} <= set(truth.columns)
    assert len(truth) == 3000 and set(truth["la_code"]) == {"W06000015", "W06000002"}
    for la in ("W06000015", "W06000002"):
        assert len(list(settings.inbox(la).glob("*.cmedelivery"))) == 1
        engine = open_home(settings).store(la)
        registers = load_registers(engine, la)
        engine.dispose()
        census = registers["school_census"]
        on_census = truth[(truth["la_code"] == la) & truth["registers"].str.contains("school_census:")]
        ids = set(census["record_id"])
        listed = {item.split(":", 1)[1] for cell in on_census["registers"] for item in cell.split(";") if item.startswith("school_census:")}
        assert listed <= ids
    out = capsys.readouterr()
    assert "3000 children" in out.out


def test_no_plaintext_nhs_number_outside_partner(
    tmp_path: Path, keystore_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = use_keystore(monkeypatch, keystore_backend)
    home = tmp_path / "home"
    assert main(["--home", str(home), "simulate", "--la", "W06000001", "--children", "800"]) == 0
    truth = pd.read_csv(home / "partner" / "truth.csv", dtype=str)
    needles = [n.encode() for n in truth["nhs_number"]]
    assert len(needles) == 800
    scanned = 0
    # The key store lives beside the home (file:) or in the SoftHSM2 token directory, never in it.
    keys = keystore_files(load_settings(home, environ=env).keystore_uri)
    assert keys.is_dir()
    for root in (home, keys):
        for path in root.rglob("*"):
            if path.is_file() and "partner" not in path.relative_to(root).parts:
                data = path.read_bytes()
                scanned += 1
                assert not any(n in data for n in needles), path.name
    assert scanned >= 3  # store, delivery, keys


def test_unknown_la_code_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(tmp_path), "simulate", "--la", "W06000099"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not the ONS code" in err[0]


def test_partner_package_reports_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(tmp_path), "partner", "package", str(tmp_path / "nope.csv"), "--la", "W06000015"]) == 2
    assert re.fullmatch(r"cme partner: cannot read .*nope\.csv: No such file or directory\n", capsys.readouterr().err)


def test_partner_package_puts_a_delivery_in_the_inbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keystore_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_keystore(monkeypatch, keystore_backend)
    plain = tmp_path / "plain.csv"
    plain.write_text("nhs_number,forename\n9990000026,Siân\n", encoding="utf-8")
    assert main(["--home", str(tmp_path / "h"), "partner", "package", str(plain), "--la", "W06000015"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed.parent == tmp_path / "h" / "la" / "W06000015" / "inbox" and printed.is_file()


def test_simulate_names_chooses_the_name_frequencies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jones = {}
    for names in ("2020", "1830s"):
        home = tmp_path / names
        assert main(["--home", str(home), "simulate", "--la", "W06000002", "--children", "1500", "--seed", "4",
                     "--names", names]) == 0
        census = load_registers(open_home(load_settings(home, environ={})).store("W06000002"), "W06000002")["school_census"]
        jones[names] = float((census["surname"].str.upper() == "JONES").mean())
    assert jones["2020"] < 0.08 < 0.11 < jones["1830s"]  # 5.4% against 14% (register noise aside)
    with pytest.raises(SystemExit) as refused:  # argparse: a usage line and exit status 2
        main(["--home", str(tmp_path / "x"), "simulate", "--la", "W06000002", "--names", "1900s"])
    assert refused.value.code == 2 and "--names: invalid choice: '1900s'" in capsys.readouterr().err


def test_simulate_hard_reaches_the_simulator(tmp_path: Path) -> None:
    # The same seed with --hard: the same children (NHS numbers) in harder families, so the
    # registers' people differ; the partner's truth keeps its columns.
    truths = []
    for name, extra in (("plain", []), ("hard", ["--hard"])):
        home = tmp_path / name
        assert main(["--home", str(home), "simulate", "--la", "W06000002", "--children", "1500", "--seed", "4", *extra]) == 0
        truths.append(pd.read_csv(home / "partner" / "truth.csv", dtype=str, keep_default_na=False))
    plain, hard = truths
    assert list(plain.columns) == list(hard.columns) and len(plain) == len(hard) == 1500
    assert not plain["household_id"].equals(hard["household_id"]) or not plain["registers"].equals(hard["registers"])
