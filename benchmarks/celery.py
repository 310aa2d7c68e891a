"""All-Wales through Airflow's CeleryExecutor: `cme airflow --executor celery --workers 2`.

    .venv/bin/python benchmarks/celery.py [--children N] [--workers 2] [--concurrency 2]

A throw-away PostgreSQL (tests/postgres_server.py) holds Airflow's metadata, the Celery results
and the LA stores. The arrangement is started and healthy first (its start-up run done); then
`cme simulate --la all` (440,000 children by default), and one `cme_matching` run for all 22 LAs
is triggered through the REST API. Wall time is from the trigger to the run's end (polled every
second); memory is sampled every second over every process `cme airflow` started: the peak of
their total RSS (shared pages counted in each process, so an overstatement) and the largest single
process. Ends with a SIGTERM to `cme airflow` and checks that nothing it started is left.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
CME = [sys.executable, "-m", "cme_pipeline.cli"]
sys.path.insert(0, str(ROOT / "tests"))


class Api:
    def __init__(self, port: int, passwords: Path) -> None:
        self.base, self.passwords, self.token = f"http://localhost:{port}", passwords, ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {self.token}"} if self.token else {})})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def wait(self, ready: Any, process: subprocess.Popen[bytes]) -> Any:
        while True:
            if process.poll() is not None:
                raise SystemExit("cme airflow ended early")
            try:
                if value := ready():
                    return value
            except OSError:
                pass
            time.sleep(1)


class MemorySampler(threading.Thread):
    """Every second: the total and the largest RSS of the processes below ``pid``."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_total, self.peak_single, self.running = pid, 0, 0, True

    def run(self) -> None:
        while self.running:
            sizes = []
            try:
                for child in psutil.Process(self.pid).children(recursive=True):
                    try:
                        sizes.append(child.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            self.peak_total = max(self.peak_total, sum(sizes))
            self.peak_single = max(self.peak_single, max(sizes, default=0))
            time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--children", type=int, default=None, help="children across all LAs (default: full scale)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    from postgres_server import start_server

    from cme_pipeline.airflow_services import free_port

    server = start_server()
    assert server is not None, "PostgreSQL binaries are not installed"
    root = Path(tempfile.mkdtemp(prefix="cme-celery-bench-"))
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CME_", "AIRFLOW"))} | {
        "CME_DATABASE_URL": server.create_database("cme"),
        "CME_AIRFLOW_DATABASE_URL": server.create_database("airflow"),
        "CME_KEYSTORE": f"file:{root / 'keys'}",
    }
    port = free_port()
    log = open(root / "cme-airflow.log", "wb")  # noqa: SIM115
    started = time.monotonic()
    process = subprocess.Popen([*CME, "--home", str(home), "airflow", "--executor", "celery", "--workers",
                                str(args.workers), "--concurrency", str(args.concurrency), "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        api = Api(port, home / "airflow" / "simple_auth_manager_passwords.json.generated")
        api.wait(lambda: all(p.get("status") == "healthy" for p in api.call("GET", "/api/v2/monitor/health").values()),
                 process)
        api.token = api.call("POST", "/auth/token", {"username": "admin", "password": json.loads(
            api.passwords.read_text())["admin"]})["access_token"]
        api.wait(lambda: (runs := api.call("GET", "/api/v2/dags/cme_matching/dagRuns")["dag_runs"])
                 and all(r["state"] in ("success", "failed") for r in runs), process)
        print(f"arrangement healthy, start-up run done: {time.monotonic() - started:.1f} s", flush=True)

        t = time.monotonic()
        subprocess.run([*CME, "--home", str(home), "simulate", "--la", "all",
                        *(["--children", str(args.children)] if args.children else [])],
                       env=env, check=True, capture_output=True)
        print(f"simulate: {time.monotonic() - t:.1f} s", flush=True)

        sampler = MemorySampler(process.pid)
        sampler.start()
        t = time.monotonic()
        run = api.call("POST", "/api/v2/dags/cme_matching/dagRuns", {"logical_date": None, "conf": {}})
        path = f"/api/v2/dags/cme_matching/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}"
        state = api.wait(lambda: (s := api.call("GET", path)["state"]) in ("success", "failed") and s, process)
        wall = time.monotonic() - t
        sampler.running = False
        tasks: list[dict[str, Any]] = []
        while len(tasks) < (page := api.call("GET", f"{path}/taskInstances?limit=100&offset={len(tasks)}"))["total_entries"]:
            tasks += page["task_instances"]
        per_worker: dict[str, int] = {}
        for task in tasks:
            worker = (task.get("hostname") or "").partition("@")[0] or "-"
            per_worker[worker] = per_worker.get(worker, 0) + 1
        load = os.getloadavg()
        print(f"run {state}: {wall:.1f} s from trigger to end; tasks per worker {per_worker}; "
              f"peak RSS total {sampler.peak_total / 2**20:.0f} MiB, largest process {sampler.peak_single / 2**20:.0f} MiB; "
              f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; {platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}", flush=True)
    finally:
        before = [p for p in psutil.Process(process.pid).children(recursive=True)] if process.poll() is None else []
        process.send_signal(signal.SIGTERM)
        process.wait()
        left = [p for p in before if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        print(f"SIGTERM: cme airflow exited {process.returncode}; processes left behind: {len(left)}")
        log.close()
        server.stop()


if __name__ == "__main__":
    main()
