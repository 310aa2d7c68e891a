"""Shared fixtures. Each area keeps its own fixtures in ``tests/fixtures_<area>.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.home import close_homes

# One line per fixtures module; helpers add theirs here.
pytest_plugins: list[str] = ["softhsm", "fixtures_quality", "fixtures_matching", "postgres_server", "fixtures_evidence",
                             "fixtures_minimise"]


# The longest modules, longest first (minutes each on 2 cores). `make test` runs the suite on two
# xdist workers, module by module in collection order (`--no-loadscope-reorder`): started first,
# they run beside the many short modules instead of leaving one worker alone at the end.
LONGEST_FIRST = ("test_faults.py", "test_celery.py", "test_airflow_ui.py", "test_bad_deliveries_cli.py",
                 "test_run_parallel.py", "test_ui_pages.py", "test_supervisor.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the longest modules first (a stable sort: every other test keeps its order)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def settings(tmp_path: Path, keystore_backend: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on a fresh home under the test's temporary directory, SQLite store; once with
    the ``file:`` key store and once with a fresh SoftHSM2 token (``pkcs11:``).

    ``CME_KEYSTORE`` is set (or cleared) in the environment too, so the CLI and any child
    process the test starts find the same keys."""
    from softhsm import keystore_env

    env = keystore_env(keystore_backend)
    if env:
        monkeypatch.setenv("CME_KEYSTORE", env["CME_KEYSTORE"])
    else:
        monkeypatch.delenv("CME_KEYSTORE", raising=False)
    return load_settings(tmp_path / "home", environ=env)


@pytest.fixture(autouse=True)
def _close_homes() -> Iterator[None]:
    """Each test's homes are wired afresh: engines opened by one test never leak into the next."""
    yield
    close_homes()


@pytest.fixture(autouse=True)
def _restore_cme_environment() -> Iterator[None]:
    """``cme run`` in-process points this process's environment at its home for Airflow's sake
    (``embedded_airflow.prepare``): put back every ``CME_*`` variable after the test, so the next
    test never reads another home's key store or database from the environment."""
    before = {k: v for k, v in os.environ.items() if k.startswith("CME_")}
    yield
    for name in [k for k in os.environ if k.startswith("CME_") and k not in before]:
        del os.environ[name]
    os.environ.update(before)
