"""The composition root: one set of services per home, keys outside the home, run settings."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from cme_pipeline.config import load_settings
from cme_pipeline.errors import ConfigError
from cme_pipeline.home import open_home
from cme_pipeline.pipeline import steps


def test_services_are_built_once_and_shared_by_a_runs_settings(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "home", environ={})
    home = open_home(settings)
    assert open_home(settings) is home
    engine = home.store("W06000015")
    assert home.store("W06000015") is engine  # one engine per database, schema created once
    stricter = open_home(replace(settings, match_threshold=0.99))
    assert stricter.settings.match_threshold == 0.99
    assert stricter.keys is home.keys and stricter.store("W06000015") is engine


def test_keys_live_beside_the_home_never_in_it(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "var", environ={})
    assert settings.keystore_uri == f"file:{tmp_path / 'var.keys'}"
    open_home(settings)
    assert oct((tmp_path / "var.keys").stat().st_mode & 0o777) == oct(0o700)
    with pytest.raises(ConfigError, match="must not be inside CME_HOME"):
        load_settings(tmp_path / "var", environ={"CME_KEYSTORE": f"file:{tmp_path / 'var' / 'keys'}"})
    with pytest.raises(ConfigError, match="file:/path or a pkcs11: URI"):
        load_settings(tmp_path / "var", environ={"CME_KEYSTORE": "vault://keys"})


def test_a_threshold_of_zero_is_a_value_not_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CME_HOME", str(tmp_path))
    chosen = steps._settings({"match_threshold": 0.97, "possible_threshold": 0})
    assert (chosen.match_threshold, chosen.possible_threshold) == (0.97, 0.0)
    default = steps._settings({"match_threshold": None})
    assert default.match_threshold == load_settings(tmp_path, environ={}).match_threshold


@pytest.mark.parametrize(("match", "possible"), [(0.0, 0.5), (0.01, 0.0), (0.89, 0.5), (1.5, 0.5), (0.95, 0.96)])
def test_a_threshold_that_would_delete_children_on_a_typo_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], match: float, possible: float
) -> None:
    from cme_pipeline.cli import main
    from cme_pipeline.errors import UsageError

    monkeypatch.setenv("CME_HOME", str(tmp_path))
    with pytest.raises(UsageError, match="refused"):
        steps._settings({"match_threshold": match, "possible_threshold": possible})
    args = ["--home", str(tmp_path), "run", "--la", "W06000015",
            "--match-threshold", str(match), "--possible-threshold", str(possible)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0]


def test_a_forked_worker_opens_its_own_engine(tmp_path: Path) -> None:
    home = open_home(load_settings(tmp_path / "home", environ={}))
    parent = home.store("W06000015")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's pooled connections must not be reused here
        os.close(read)
        os.write(write, b"1" if home.store("W06000015") is not parent else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert home.store("W06000015") is parent
