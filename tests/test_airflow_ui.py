"""`cme airflow` (what `make airflow` runs): Airflow's own UI, scheduler and workers on the home.

Starts the real `airflow standalone` on a free port, waits until every component reports
healthy, checks the five DAGs load without import errors, triggers `cme_matching` through the
REST API as an analyst would from the UI, and checks the run's outcome, its evidence, and that
a `cme run` on the same home refuses while Airflow holds it.

Once per key store, ``[file]`` and ``[pkcs11]``: unlike `cme run` (which runs the DAG
in-process), Airflow runs the tasks here in the processes its LocalExecutor forks, so this is the
test of a PKCS#11 token used from such workers. ``CME_KEYSTORE`` is set for the whole module, so
`airflow standalone` and the `cme` commands run beside it find the same key store.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from softhsm import use_keystore

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.pipeline.lock import HomeBusy
from cme_pipeline.simulate.wales import simulate_to_home

pytestmark = pytest.mark.airflow

LA = "W06000002"  # Gwynedd
READY_WITHIN = 600  # seconds: a fail-safe so a broken start cannot hang the suite, not a speed check


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """End a server started in its own process group: SIGTERM, then SIGKILL after a minute."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    """The running Airflow's REST API, as the UI uses it."""

    def __init__(self, port: int, settings: Settings) -> None:
        self.base = f"http://localhost:{port}"
        self.settings = settings
        self.token = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.base + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {self.token}"} if self.token else {})},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def log_in(self) -> None:
        passwords = self.settings.airflow_home / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords.read_text())["admin"]
        self.token = self.call("POST", "/auth/token", {"username": "admin", "password": password})["access_token"]

    def wait(self, what: str, ready: Any) -> Any:
        deadline = time.monotonic() + READY_WITHIN
        while True:
            try:
                value = ready()
                if value:
                    return value
            except OSError:
                pass
            assert time.monotonic() < deadline, f"Airflow never got {what}"
            time.sleep(2)


@pytest.fixture(scope="module")
def airflow_ui(
    tmp_path_factory: pytest.TempPathFactory, module_keystore_backend: str
) -> Iterator[tuple[Api, subprocess.Popen[bytes], Settings]]:
    with pytest.MonkeyPatch.context() as keystore:  # for the module's tests: their `cme` commands too
        keystore_env = use_keystore(keystore, module_keystore_backend)
        yield from _airflow_ui(tmp_path_factory.mktemp(f"ui-{module_keystore_backend}") / "home", keystore_env)


def _airflow_ui(home: Path, keystore_env: dict[str, str]) -> Iterator[tuple[Api, subprocess.Popen[bytes], Settings]]:
    settings = load_settings(home, environ=keystore_env)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CME_", "AIRFLOW"))} | keystore_env
    log = open(home.parent / "standalone.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "cme_pipeline.cli", "--home", str(home), "airflow", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        api = Api(port, settings)
        until_ready(api, process, home.parent / "standalone.log")
        simulate_to_home(settings, [LA], children=600, seed=6)
        yield api, process, settings
    finally:
        stop_group(process)
        log.close()


def test_the_five_dags_load_without_import_errors(airflow_ui: tuple[Api, subprocess.Popen[bytes], Settings]) -> None:
    api, _, _ = airflow_ui
    expected = {"cme_cross_la", "cme_matching", "cme_registers", "cme_retention", "nhs_partner_simulator"}

    def parsed() -> set[str] | None:  # the DAG processor may store one file before the next
        dags = {d["dag_id"] for d in api.call("GET", "/api/v2/dags")["dags"]}
        return dags if len(dags) >= len(expected) else None

    assert api.wait("the DAGs parsed", parsed) == expected
    assert api.call("GET", "/api/v2/importErrors")["total_entries"] == 0


def test_a_cme_run_beside_it_refuses(airflow_ui: tuple[Api, subprocess.Popen[bytes], Settings]) -> None:
    _, _, settings = airflow_ui
    done = subprocess.run([sys.executable, "-m", "cme_pipeline.cli", "--home", str(settings.home), "run", "--la", LA],
                          capture_output=True, text=True, check=False)
    assert done.returncode == HomeBusy.exit_code, done.stderr
    assert "another cme run (or cme airflow) is processing" in done.stderr
    assert list(settings.inbox(LA).glob("*.cmedelivery")), "the refused run touched the delivery"


def until_ready(api: Api, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until every component reports healthy, log in as admin, and wait for the scheduler's
    start-up run of cme_matching to end.

    On start the scheduler runs the latest termly interval of cme_matching (catchup is off); a
    delivery arriving after it is opened by the run the test triggers itself.
    """

    def healthy() -> bool:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        health = api.call("GET", "/api/v2/monitor/health")
        return all(part.get("status") == "healthy" for part in health.values())

    api.wait("healthy", healthy)
    api.log_in()

    def startup_run_done() -> bool:
        runs = api.call("GET", "/api/v2/dags/cme_matching/dagRuns")["dag_runs"]
        return bool(runs) and all(r["state"] in ("success", "failed") for r in runs)

    api.wait("its start-up run of cme_matching done", startup_run_done)


def _trigger(api: Api, conf: dict[str, Any]) -> dict[str, Any]:
    """Trigger cme_matching as the analyst's UI does.

    On the embedded SQLite metadata DB the API server's own audit-log insert can time out on a
    lock while the scheduler writes (seen once: HTTP 500 "INSERT INTO log"). The analyst would
    press the button again; so does this, unless the first press did create the run.
    """
    for attempt in range(3):
        try:
            run: dict[str, Any] = api.call("POST", "/api/v2/dags/cme_matching/dagRuns", {"logical_date": None, "conf": conf})
            return run
        except urllib.error.HTTPError as exc:
            if exc.code != 500 or attempt == 2:
                raise
            manual = [r for r in api.call("GET", "/api/v2/dags/cme_matching/dagRuns")["dag_runs"] if r["run_type"] == "manual"]
            if manual:
                return dict(manual[0])
            time.sleep(3)
    raise AssertionError("unreachable")


def test_an_analyst_triggers_cme_matching_from_the_api(airflow_ui: tuple[Api, subprocess.Popen[bytes], Settings]) -> None:
    api, _, settings = airflow_ui
    run = _trigger(api, {"la_codes": [LA]})
    path = f"/api/v2/dags/cme_matching/dagRuns/{urllib.request.quote(run['dag_run_id'], safe='')}"
    state = api.wait("the run finished", lambda: (s := api.call("GET", path)["state"]) in ("success", "failed") and s)
    tasks = api.call("GET", f"{path}/taskInstances?limit=100")["task_instances"]
    assert state == "success", sorted((t["task_id"], t["map_index"], t["state"]) for t in tasks)
    assert {t["task_id"] for t in tasks if t["map_index"] == 0 and t["state"] == "success"} >= {
        "per_la.open_delivery", "per_la.match", "per_la.minimise", "per_la.evidence"}
    assert not list(settings.inbox(LA).glob("*.cmedelivery"))
    verified = subprocess.run([sys.executable, "-m", "cme_pipeline.cli", "--home", str(settings.home),
                               "evidence", "verify", "--run", run["dag_run_id"]], capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    audit = subprocess.run([sys.executable, "-m", "cme_pipeline.cli", "--home", str(settings.home),
                            "audit", "runs", "--format", "json"], capture_output=True, text=True, check=False)
    rows = {r["run_id"]: r for r in json.loads(audit.stdout)}
    assert rows[run["dag_run_id"]]["trigger"] == "manual" and "rest_api" in rows[run["dag_run_id"]]["triggered_by"]


def test_standalone_log_holds_no_personal_data(airflow_ui: tuple[Api, subprocess.Popen[bytes], Settings]) -> None:
    _, _, settings = airflow_ui
    truth = (settings.partner_dir / "truth" / f"{LA}.csv").read_text().splitlines()[1:]
    numbers = [line.split(",")[0] for line in truth]
    assert len(numbers) > 100
    logs = [settings.home.parent / "standalone.log", *Path(settings.airflow_home / "logs").rglob("*.log")]
    text = b"".join(p.read_bytes() for p in logs if p.is_file())
    assert text and not [n for n in numbers if n.encode() in text]


def test_sigterm_to_cme_airflow_ends_every_process_it_started(airflow_ui: tuple[Api, subprocess.Popen[bytes], Settings]) -> None:
    # As a service manager stops it: one SIGTERM to `cme airflow` alone, not to its group.
    # (Before it supervised its children, the scheduler, triggerer, API server and task
    # processes lived on.) Last in the module: it ends the fixture's Airflow.
    _, process, _ = airflow_ui
    started = [p for p in psutil.Process(process.pid).children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    assert len(started) >= 4, [p.name() for p in started]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=READY_WITHIN) == 0  # a fail-safe, not a speed check
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [(p.pid, p.name()) for p in left]
