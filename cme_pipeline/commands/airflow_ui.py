"""``cme airflow``: Airflow's own UI and scheduler on the embedded home (``make airflow``)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from cme_pipeline.config import Settings
from cme_pipeline.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme airflow``."""
    p = sub.add_parser("airflow", help="start Airflow's UI, scheduler and workers on this home")
    p.add_argument("--port", type=int, default=8080, help="port of the UI and API server (default 8080)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Replace this process with ``airflow standalone`` pointed at the home."""
    from cme_pipeline.embedded_airflow import airflow_environment
    from cme_pipeline.pipeline.lock import lock_home_across_exec

    airflow = shutil.which("airflow", path=os.path.dirname(sys.executable)) or shutil.which("airflow")
    if airflow is None:
        raise ConfigError("the airflow command is not installed in this environment")
    lock_home_across_exec(settings)
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    env = os.environ | airflow_environment(settings)
    # The embedded default is one small machine on SQLite: 32 task processes at once (Airflow's
    # default) starve its own API server. An operator's setting still wins.
    env.setdefault("AIRFLOW__CORE__PARALLELISM", str(2 * (os.cpu_count() or 1)))
    # Tasks reach the execution API at the base URL, so both move with the port.
    base_url = f"http://localhost:{args.port}"
    env |= {"AIRFLOW__API__PORT": str(args.port), "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/"}
    # standalone starts its parts as `airflow …` subprocesses found on PATH: put ours first.
    env["PATH"] = os.pathsep.join([os.path.dirname(airflow), env.get("PATH", "")])
    sys.stdout.write(
        f"Starting Airflow on {settings.airflow_home}; the UI is at {base_url} "
        f"(passwords of admin, analyst, dpo and auditor in "
        f"{settings.airflow_home / 'simple_auth_manager_passwords.json.generated'}; the CME pages at {base_url}/cme/)\n"
    )
    sys.stdout.flush()
    os.execve(airflow, [airflow, "standalone"], env)
