"""`cme airflow --executor celery`: all 22 LAs through real Celery workers, one of them killed mid-task.

Starts the real arrangement once (`cme_pipeline.airflow_services`): its own Redis broker,
PostgreSQL for Airflow's metadata, the Celery results and the LA stores, an API server, scheduler,
DAG processor, triggerer and two Celery workers, each a process with its own working directory,
sharing the key store through ``CME_KEYSTORE``. Every LA is simulated small (about 100 children):
the cost is Airflow's per task (22 LAs x 6 steps), not the data, so the module makes ONE Celery run.

1. `cme_matching` for all 22 LAs: tasks land on both workers (Airflow's TaskInstance.hostname
   tells them apart); while one worker runs a `match` task it is killed with SIGKILL, with every
   process below it (as a machine lost would be). Airflow notices the task's heartbeat stop, the
   killed try stays recorded on that worker and not successful, the retry succeeds on the other
   worker, and the run converges: per-LA outcomes equal those of an undisturbed in-process
   `cme run --la all` of the same simulated extracts (same seed) in a home of its own, each
   delivery is processed once, and `cme evidence verify` passes.
2. A SIGTERM to `cme airflow` (a service manager stopping it) ends every process it started.

Waits are shortened for the test through configuration only (Airflow's ``AIRFLOW__*`` settings
and ``CME_TASK_RETRY_DELAY``); production keeps its defaults (docs/celery.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from postgres_server import PostgresServer
from test_airflow_ui import Api, until_ready

from cme_pipeline.areas import LA_CODES
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.runs import RunPaths, read_state
from cme_pipeline.simulate.wales import simulate_to_home

pytestmark = pytest.mark.airflow

CHILDREN = 2200  # across the 22 LAs (about 100 each): small, the point is the tasks' distribution
SEED = 17
OUTCOME_KEYS = ("received", "matched", "possible", "unmatched", "retained")
# Short enough for a test: Airflow fails a task whose heartbeat stopped (its worker is gone) after
# this many seconds (a running task heartbeats every 5 s, [workers] min_heartbeat_interval), then
# retries it after CME_TASK_RETRY_DELAY. Production keeps Airflow's 300 s and 30 s (docs/celery.md).
HEARTBEAT_TIMEOUT = "20"
RETRY_DELAY = "2"


@dataclass
class Stack:
    """The running `cme airflow --executor celery`, its REST API and what the tests found."""

    process: subprocess.Popen[bytes]
    api: Api
    settings: Settings
    env: dict[str, str]
    log: Path
    reference: subprocess.Popen[str]
    reference_settings: Settings

    def cme(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cme_pipeline.cli", "--home", str(self.settings.home), *args],
                              env=self.env, capture_output=True, text=True, check=False)

    def trigger(self) -> str:
        run = self.api.call("POST", "/api/v2/dags/cme_matching/dagRuns",
                            {"logical_date": None, "conf": {"la_codes": list(LA_CODES)}})
        return str(run["dag_run_id"])

    def run_path(self, run_id: str) -> str:
        return f"/api/v2/dags/cme_matching/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:  # the API pages by 100 at most
            page = self.api.call("GET", f"{self.run_path(run_id)}/taskInstances?limit=100&offset={len(found)}")
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def wait_for_end(self, run_id: str) -> str:
        def ended() -> str | None:
            assert self.process.poll() is None, self.log.read_text(errors="replace")[-3000:]
            state = str(self.api.call("GET", self.run_path(run_id))["state"])
            return state if state in ("success", "failed") else None

        return str(self.api.wait(f"run {run_id} ended", ended))

    def outcomes(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Each LA's counts for the run, from its run state (ids and counts only)."""
        return {la: {k: read_state(RunPaths(self.settings, la, run_id)).get(k) for k in (*OUTCOME_KEYS, "completed")}
                for la in LA_CODES}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("celery")
    for name in ("celery_cme", "celery_airflow"):
        postgres_server.drop_database(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CME_", "AIRFLOW"))} | {
        "CME_DATABASE_URL": postgres_server.create_database("celery_cme"),
        "CME_AIRFLOW_DATABASE_URL": postgres_server.create_database("celery_airflow"),
        # The key store every component (and every worker machine) reaches the same way.
        "CME_KEYSTORE": f"file:{root / 'keys'}",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": HEARTBEAT_TIMEOUT,
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        # A message the killed worker had taken but not yet started leaves its task queued in
        # Airflow; after this long the scheduler queues it again (default 600 s).
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
        "CME_TASK_RETRY_DELAY": RETRY_DELAY,
        # The DAG files do not change during the test: parse them once, not every 30 s, which
        # leaves the two cores to the tasks.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    }
    home = root / "home"
    settings = load_settings(home, environ=env)
    # The reference: the same extracts (same seed) run undisturbed in-process, in a home and key
    # store of their own, while the Celery services start.
    reference_env = {k: v for k, v in os.environ.items() if not k.startswith(("CME_", "AIRFLOW"))} | {
        "CME_KEYSTORE": f"file:{root / 'reference-keys'}"}
    reference_settings = load_settings(root / "reference", environ=reference_env)
    simulate_to_home(reference_settings, list(LA_CODES), children=CHILDREN, seed=SEED)
    reference = subprocess.Popen(
        [sys.executable, "-m", "cme_pipeline.cli", "--home", str(reference_settings.home), "run", "--la", "all"],
        env=reference_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    port = _free_port()
    log = root / "cme-airflow.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cme_pipeline.cli", "--home", str(home), "airflow", "--executor", "celery",
             "--workers", "2", "--concurrency", "2", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        api = Api(port, settings)
        stack = Stack(process, api, settings, env, log, reference, reference_settings)
        until_ready(api, process, log)
        yield stack
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            for child in _descendants(process.pid):
                child.kill()
            process.wait()


def _free_port() -> int:
    from cme_pipeline.airflow_services import free_port

    return free_port()


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    except psutil.NoSuchProcess:
        return []


def _worker_of(hostname: str | None) -> str:
    return (hostname or "").partition("@")[0]


def test_sqlite_is_refused_for_celery(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CME_", "AIRFLOW"))}
    done = subprocess.run([sys.executable, "-m", "cme_pipeline.cli", "--home", str(tmp_path / "home"), "airflow",
                           "--executor", "celery"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "cme airflow: --executor celery needs CME_AIRFLOW_DATABASE_URL set to a postgresql:// URL "
        "(workers on several machines cannot share a SQLite file)"]


def test_all_22_las_on_two_workers_one_killed_mid_task_converge(stack: Stack) -> None:
    simulate_to_home(stack.settings, list(LA_CODES), children=CHILDREN, seed=SEED)
    run_id = stack.trigger()

    def match_running() -> tuple[str, int, str] | None:
        for t in stack.task_instances(run_id):
            if t["task_id"] == "per_la.match" and t["state"] == "running" and t["hostname"]:
                return t["task_id"], t["map_index"], _worker_of(t["hostname"])
        return None

    while (running := match_running()) is None:  # polled fast: a small LA's match takes seconds
        assert stack.process.poll() is None and stack.api.call("GET", stack.run_path(run_id))["state"] in ("queued", "running")
        time.sleep(0.2)
    task_id, map_index, victim = running
    _kill_worker(stack.process.pid, victim)

    state = stack.wait_for_end(run_id)
    tasks = stack.task_instances(run_id)
    assert state == "success", sorted((t["task_id"], t["map_index"], t["state"]) for t in tasks if t["state"] != "success")
    per_la = [t for t in tasks if t["task_id"].startswith("per_la.") and t["task_id"] != "per_la.abandon"]
    assert len(per_la) == 22 * 6 and {t["state"] for t in per_la} == {"success"}
    # Tasks landed on both workers: first tries (before the kill, or never retried) on each.
    assert {_worker_of(t["hostname"]) for t in per_la if t["try_number"] == 1} == {"worker1", "worker2"}
    # The killed try is recorded on the victim and not successful; its retry succeeded on the other.
    tries = stack.api.call("GET", f"{stack.run_path(run_id)}/taskInstances/{task_id}/tries?map_index={map_index}")
    history = [(_worker_of(t["hostname"]), t["state"]) for t in sorted(tries["task_instances"], key=lambda t: t["try_number"])]
    survivor = "worker2" if victim == "worker1" else "worker1"
    assert len(history) == 2, history
    assert history[0][0] == victim and history[0][1] != "success"
    assert history[1] == (survivor, "success")
    # Every retried task ran on the survivor.
    assert {_worker_of(t["hostname"]) for t in tasks if t["try_number"] > 1} == {survivor}
    assert f"{victim} stopped unexpectedly" in stack.log.read_text(errors="replace")

    # Converged: the same per-LA outcomes as the undisturbed in-process run of the same seed,
    # each delivery processed once (its run completed once, nothing left in the inbox or
    # quarantine, exactly the retained records counted), and the evidence verifies.
    reference = _reference_outcomes(stack)
    assert stack.outcomes(run_id) == reference
    from cme_pipeline.home import open_home
    from cme_pipeline.la.minimise import list_retained

    home = open_home(stack.settings)
    for la in LA_CODES:
        assert not list(stack.settings.inbox(la).glob("*.cmedelivery")), la
        assert not list(stack.settings.quarantine(la).glob("*.cmedelivery*")), la
        assert len(list_retained(home, la, run_id)) == reference[la]["retained"], la
        # No other run of this home processed a delivery (the scheduler's start-up run found none).
        assert [s["run_id"] for s in _run_states(stack.settings, la) if s.get("received")] == [run_id], la
    assert len([t for t in tasks if t["task_id"] == "per_la.evidence" and t["state"] == "success"]) == 22
    verified = stack.cme("evidence", "verify", "--run", run_id)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _run_states(settings: Settings, la: str) -> list[dict[str, Any]]:
    """The state of every run that touched the LA, read where the run keeps it."""
    found = sorted((settings.store_dir(la) / "runs").glob("*/state.json"))
    return [read_state(RunPaths(settings, la, json.loads(f.read_text())["run_id"])) for f in found]


def _reference_outcomes(stack: Stack) -> dict[str, dict[str, Any]]:
    """Each LA's counts from the undisturbed in-process `cme run --la all` (its only run)."""
    output, _ = stack.reference.communicate()
    assert stack.reference.returncode == 0, output[-3000:]
    outcomes = {}
    for la in LA_CODES:
        states = [s for s in _run_states(stack.reference_settings, la) if s.get("received")]
        assert len(states) == 1, (la, len(states))
        outcomes[la] = {k: states[0].get(k) for k in (*OUTCOME_KEYS, "completed")}
    assert all(o["completed"] and o["received"] for o in outcomes.values()), outcomes
    return outcomes


def _kill_worker(supervisor_pid: int, name: str) -> None:
    """SIGKILL one Celery worker and every process below it (its pool, the task it runs)."""
    for child in psutil.Process(supervisor_pid).children():
        if f"--celery-hostname {name}@" in " ".join(child.cmdline()):
            doomed = [child, *child.children(recursive=True)]
            for process in doomed:
                process.kill()
            return
    raise AssertionError(f"no process of {name}")


def test_sigterm_ends_every_process_it_started(stack: Stack) -> None:
    started = _descendants(stack.process.pid)
    names = " ".join(" ".join(p.cmdline()) for p in started)
    assert "redis-server" in names and "scheduler" in names and "celery" in names
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=600) == 0  # a fail-safe, not a speed check
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [(p.pid, p.name()) for p in left]
    # Each component had its own working directory; the broker kept nothing on disk, and its
    # configuration (which holds its password) was for the owner alone.
    services = stack.settings.airflow_home / "services"
    for name in ("api-server", "scheduler", "dag-processor", "triggerer", "workers/worker1", "workers/worker2", "redis"):
        assert (services / name).stat().st_mode & 0o777 == 0o700, name
    assert (services / "redis" / "redis.conf").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (services / "redis").iterdir()) == ["redis.conf"]
