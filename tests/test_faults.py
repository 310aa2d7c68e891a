"""Faults at every task of cme_matching: the rerun converges to what an undisturbed run retains.

The tasks are driven here as Airflow drives them (same run id on a retry, a new run id after the
process died), without Airflow itself so that every task and fault kind fits in the suite; the
end-to-end tests run the same steps through the real DAG.

Fault kinds: an exception after the task's side effects (then Airflow's retry runs it again),
a full disk (``ENOSPC`` from a write, retried too), an exception on every try (the run is
abandoned, then a new run starts), and a kill of the process in the middle of the task (a new
run starts; the killed run never finishes).

Every case runs on both key stores (``[file]``: key files beside the home; ``[pkcs11]``: a fresh
SoftHSM2 token per home), each compared with an undisturbed run on the same backend. The steps
re-read their settings from the environment, so ``CME_KEYSTORE`` is set there as well as passed
to ``load_settings``; the killed child process inherits it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from softhsm import use_keystore

from cme_pipeline import evidence
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.home import close_homes, open_home
from cme_pipeline.la import minimise
from cme_pipeline.pipeline import steps
from cme_pipeline.runs import RunPaths, read_state
from cme_pipeline.simulate.wales import simulate_to_home

LA = "W06000015"
STEPS = ("open_delivery", "check_registers", "match", "minimise", "check_retained", "evidence")
CHILDREN = 1200


def _home(root: Path, env: dict[str, str]) -> Settings:
    settings = load_settings(root, environ=env)
    simulate_to_home(settings, [LA], children=CHILDREN, seed=11)
    return settings


def _run(run_id: str, fail: Callable[[str], None] | None = None) -> None:
    """All steps of one run; ``fail(step)`` may raise after a step's side effects."""
    params = {"la_codes": [LA]}
    for name in STEPS:
        getattr(steps, name)(LA, run_id, params)
        if fail is not None:
            fail(name)


def _retained(settings: Settings, run_id: str) -> tuple[frozenset[tuple[str, str]], dict[str, int]]:
    state = read_state(RunPaths(settings, LA, run_id))
    everything = minimise.list_retained(open_home(settings), LA)
    assert set(everything["run_id"]) == {run_id}, "rows of an abandoned or killed run were left behind"
    counts = {k: state[k] for k in ("received", "matched", "possible", "unmatched", "retained")}
    return frozenset(zip(everything["nhs_number"], everything["outcome"], strict=True)), counts


@pytest.fixture(scope="module")
def undisturbed(
    tmp_path_factory: pytest.TempPathFactory, module_keystore_backend: str
) -> tuple[frozenset[tuple[str, str]], dict[str, int]]:
    root = tmp_path_factory.mktemp(f"undisturbed-{module_keystore_backend}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CME_HOME", str(root))
        settings = _home(root, use_keystore(mp, module_keystore_backend))
        _run("manual__undisturbed")
        result = _retained(settings, "manual__undisturbed")
    # Its sessions closed before the test's own home is made: a PKCS#11 module sees a token made
    # after it was loaded only once no session is open (then it re-initialises).
    close_homes()
    assert result[1]["retained"] > 0 and result[1]["matched"] > 0
    return result


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module_keystore_backend: str) -> Settings:
    """A fresh home on the module's backend (for ``pkcs11:`` a fresh token: keys are per home)."""
    monkeypatch.setenv("CME_HOME", str(tmp_path))
    return _home(tmp_path, use_keystore(monkeypatch, module_keystore_backend))


def _converged(settings: Settings, run_id: str, undisturbed: tuple[frozenset[tuple[str, str]], dict[str, int]]) -> None:
    assert _retained(settings, run_id) == undisturbed
    assert not list(settings.inbox(LA).glob("*.cmedelivery")), "the processed delivery must be shredded"
    report = evidence.verify(settings, open_home(settings).keys, la_codes=[LA], airflow=False)
    assert report.ok, report.problems


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("kind", ["exception", "disk_full"])
def test_a_retried_task_converges(home: Settings, undisturbed, step: str, kind: str) -> None:  # noqa: ANN001
    tries = {"n": 0}

    def fail_once(name: str) -> None:
        if name == step and tries["n"] == 0:
            tries["n"] += 1
            if kind == "disk_full":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise RuntimeError("injected fault")

    run_id = "manual__retried"
    with pytest.raises((OSError, RuntimeError)):
        _run(run_id, fail_once)
    # Airflow's retry runs the failed task again with the same run id, then the rest.
    _run_from(run_id, step)
    _converged(home, run_id, undisturbed)


def _run_from(run_id: str, first: str) -> None:
    params = {"la_codes": [LA]}
    for name in STEPS[STEPS.index(first):]:
        getattr(steps, name)(LA, run_id, params)


@pytest.mark.parametrize("step", STEPS)
def test_an_abandoned_run_then_a_new_run_converges(home: Settings, undisturbed, step: str) -> None:  # noqa: ANN001
    def fail(name: str) -> None:
        if name == step:
            raise RuntimeError("injected fault on every try")

    with pytest.raises(RuntimeError):
        _run("manual__abandoned", fail)
    message = steps.abandon(LA, "manual__abandoned", {"la_codes": [LA]})["message"]
    if step == "evidence":
        # The fault came after the run had finished and certified its work: that work stands.
        assert "completed and certified" in message
        _converged(home, "manual__abandoned", undisturbed)
        return
    assert "discarded" in message
    _run("manual__second")
    _converged(home, "manual__second", undisturbed)


KILL = textwrap.dedent("""
    import os, sys
    from cme_pipeline.pipeline import steps
    step = sys.argv[1]
    real = getattr(steps, step)
    def killed(*args, **kwargs):
        real(*args, **kwargs) if sys.argv[2] == "after" else None
        os._exit(9)
    setattr(steps, step, killed)
    for name in {steps!r}:
        getattr(steps, name)({la!r}, "manual__killed", {{"la_codes": [{la!r}]}})
""").format(steps=STEPS, la=LA)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_killed_run_then_a_new_run_converges(home: Settings, undisturbed, step: str, when: str) -> None:  # noqa: ANN001
    env = {**os.environ, "CME_HOME": str(home.home)}
    done = subprocess.run([sys.executable, "-c", KILL, step, when], env=env, capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    if step == "evidence" and when == "after":
        # The killed run finished everything: nothing is waiting, nothing is processed twice.
        assert not list(home.inbox(LA).glob("*.cmedelivery"))
        _converged(home, "manual__killed", undisturbed)
        return
    _run("manual__after_kill")
    _converged(home, "manual__after_kill", undisturbed)
