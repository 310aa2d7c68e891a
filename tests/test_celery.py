"""`cme airflow --executor celery`: all 22 LAs through real Celery workers, one of them killed mid-task.

Starts the real arrangement (`cme_pipeline.airflow_services`): its own Redis broker, PostgreSQL
for Airflow's metadata, the Celery results and the LA stores, an API server, scheduler, DAG
processor, triggerer and two Celery workers, each a process with its own working directory,
sharing the key store through ``CME_KEYSTORE``. Every LA is simulated small (about 100 children):
the cost is Airflow's per task (22 LAs x 6 steps x 2 runs), not the data.

1. An undisturbed run of `cme_matching` for all 22 LAs: tasks land on both workers (Airflow's
   TaskInstance.hostname tells them apart), the run succeeds and its evidence verifies.
2. The same extracts again (same seed), dated a day later; while one worker runs a `match` task it is killed with SIGKILL, with every
   process below it (as a machine lost would be). Airflow notices the task's heartbeat stop, the
   task is retried on the other worker, the run converges: per-LA outcomes equal the undisturbed
   run's, each delivery is processed once, and `cme evidence verify` passes.
3. A SIGTERM to `cme airflow` (a service manager stopping it) ends every process it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from postgres_server import PostgresServer
from test_airflow_ui import Api

from cme_pipeline.areas import LA_CODES
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.runs import RunPaths, read_state
from cme_pipeline.simulate.wales import simulate_to_home

pytestmark = pytest.mark.airflow

CHILDREN = 2200  # across the 22 LAs (about 100 each): small, the point is the tasks' distribution
SEED = 17
OUTCOME_KEYS = ("received", "matched", "possible", "unmatched", "retained")
# Short enough for a test: Airflow fails a task whose heartbeat stopped (its worker is gone) after
# this many seconds, then retries it (the DAG's retries=1, retry_delay 30 s). Production keeps
# Airflow's 300 s (docs/celery.md).
HEARTBEAT_TIMEOUT = "30"


@dataclass
class Stack:
    """The running `cme airflow --executor celery`, its REST API and what the tests found."""

    process: subprocess.Popen[bytes]
    api: Api
    settings: Settings
    env: dict[str, str]
    log: Path
    reference: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "180",
    }
    home = root / "home"
    settings = load_settings(home, environ=env)
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
        stack = Stack(process, api, settings, env, log)

        def healthy() -> bool:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            health = api.call("GET", "/api/v2/monitor/health")
            return all(part.get("status") == "healthy" for part in health.values())

        api.wait("healthy", healthy)
        api.log_in()

        def startup_run_done() -> bool:
            # The scheduler's own start-up run of the latest termly interval, before any delivery.
            runs = api.call("GET", "/api/v2/dags/cme_matching/dagRuns")["dag_runs"]
            return bool(runs) and all(r["state"] in ("success", "failed") for r in runs)

        api.wait("its start-up run of cme_matching done", startup_run_done)
        yield stack
    finally:
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


def test_all_22_las_run_on_both_workers(stack: Stack) -> None:
    simulate_to_home(stack.settings, list(LA_CODES), children=CHILDREN, seed=SEED)
    run_id = stack.trigger()
    state = stack.wait_for_end(run_id)
    tasks = stack.task_instances(run_id)
    assert state == "success", sorted((t["task_id"], t["map_index"], t["state"]) for t in tasks if t["state"] != "success")
    per_la = [t for t in tasks if t["task_id"].startswith("per_la.") and t["task_id"] != "per_la.abandon"]
    assert len(per_la) == 22 * 6 and {t["state"] for t in per_la} == {"success"}
    assert {_worker_of(t["hostname"]) for t in per_la} == {"worker1", "worker2"}
    # Undisturbed, no task needed its retry: LAs' tasks running at once do not trip over each
    # other in the shared home (each once walked the whole home while another renamed files).
    assert {t["try_number"] for t in per_la} == {1}, sorted((t["task_id"], t["map_index"]) for t in per_la if t["try_number"] > 1)
    outcomes = stack.outcomes(run_id)
    assert all(o["completed"] and o["received"] for o in outcomes.values()), outcomes
    verified = stack.cme("evidence", "verify", "--run", run_id)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    stack.reference = outcomes


def test_a_worker_killed_mid_task_is_retried_on_the_other_and_the_run_converges(stack: Stack) -> None:
    assert stack.reference, "needs the undisturbed run of the test before"
    _send_the_same_extracts_again(stack.settings)
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
    tries = stack.api.call("GET", f"{stack.run_path(run_id)}/taskInstances/{task_id}/tries?map_index={map_index}")
    history = [(_worker_of(t["hostname"]), t["state"]) for t in sorted(tries["task_instances"], key=lambda t: t["try_number"])]
    survivor = "worker2" if victim == "worker1" else "worker1"
    assert history[0][0] == victim and history[0][1] != "success"
    assert history[-1] == (survivor, "success")
    # Every task after the kill ran on the survivor.
    assert {_worker_of(t["hostname"]) for t in tasks if t["try_number"] > 1} == {survivor}

    # Converged: the same per-LA outcomes as the undisturbed run of the same seed, each delivery
    # processed once (its run completed once, nothing left in the inbox or quarantine, exactly
    # the retained records counted), and the evidence verifies.
    assert stack.outcomes(run_id) == stack.reference
    from cme_pipeline.home import open_home
    from cme_pipeline.la.minimise import list_retained

    home = open_home(stack.settings)
    for la in LA_CODES:
        assert not list(stack.settings.inbox(la).glob("*.cmedelivery")), la
        assert not list(stack.settings.quarantine(la).glob("*.cmedelivery*")), la
        assert len(list_retained(home, la, run_id)) == stack.reference[la]["retained"], la
    assert len([t for t in tasks if t["task_id"] == "per_la.evidence" and t["state"] == "success"]) == 22
    verified = stack.cme("evidence", "verify", "--run", run_id)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{victim} stopped unexpectedly" in stack.log.read_text(errors="replace")


def _send_the_same_extracts_again(settings: Settings) -> None:
    """The partner sends each LA the same extract again (same seed: the same children), dated a
    day later: an extract not newer than the last processed one is refused as a replay."""
    import datetime as dt

    from cme_pipeline.simulate.package import package_extract
    from cme_pipeline.simulate.wales import simulate_las

    for sim in simulate_las(list(LA_CODES), CHILDREN, SEED):
        package_extract(settings, sim.la_code, sim.extract.to_csv(index=False).encode("utf-8"),
                        extract_date=sim.extract_date + dt.timedelta(days=1))


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
