"""``cme airflow``: Airflow's own UI, scheduler and workers on the home (``make airflow``).

The default runs ``airflow standalone`` on this machine. ``--executor celery`` runs the
arrangement of a service spread over several machines (``cme_pipeline.airflow_services``): a
Redis broker (unless ``CME_CELERY_BROKER_URL`` names one), API server, scheduler, DAG processor,
triggerer and Celery workers. Either way every process is supervised: a SIGTERM or Ctrl-C to
``cme airflow`` ends every one it started, and if one dies the rest are stopped with one line
naming it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time

from cme_pipeline.config import Settings
from cme_pipeline.errors import ConfigError
from cme_pipeline.supervisor import Supervisor

BROKER_READY_WITHIN = 30.0  # seconds for our own Redis to accept connections


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme airflow``."""
    p = sub.add_parser("airflow", help="start Airflow's UI, scheduler and workers on this home")
    p.add_argument("--port", type=int, default=8080, help="port of the UI and API server (default 8080)")
    p.add_argument("--executor", choices=("local", "celery"), default="local",
                   help="local: airflow standalone on this machine (default); celery: Redis broker, "
                        "API server, scheduler, DAG processor, triggerer and Celery workers (PostgreSQL only)")
    p.add_argument("--workers", type=int, default=2, help="Celery workers to start (default 2; --executor celery)")
    p.add_argument("--concurrency", type=int, default=max(2, os.cpu_count() or 1),
                   help="task slots per Celery worker (default: CPU count, at least 2)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Start the components, supervise them until a signal or a failure, stop them all."""
    from cme_pipeline import airflow_services as services
    from cme_pipeline.pipeline.lock import home_lock

    if args.executor == "celery":
        services.check_celery_databases(settings)
        if args.workers < 1 or args.concurrency < 1:
            raise ConfigError("--workers and --concurrency must be at least 1")
    airflow = shutil.which("airflow", path=os.path.dirname(sys.executable)) or shutil.which("airflow")
    if airflow is None:
        raise ConfigError("the airflow command is not installed in this environment")
    with home_lock(settings):  # a `cme run` beside Airflow would open the same deliveries
        settings.airflow_home.mkdir(parents=True, exist_ok=True)
        env = services.base_environment(settings, dict(os.environ), args.port)
        # standalone starts its parts as `airflow …` subprocesses found on PATH: put ours first.
        env["PATH"] = os.pathsep.join([os.path.dirname(airflow), env.get("PATH", "")])
        supervisor = Supervisor()
        try:
            if args.executor == "celery":
                _start_celery(args, settings, airflow, env, supervisor)
            else:
                for spec in services.standalone(settings, airflow, env):
                    supervisor.start(spec.name, spec.argv, spec.cwd, spec.env)
        except BaseException:
            supervisor.stop()
            raise
        base_url = env["AIRFLOW__API__BASE_URL"]
        sys.stdout.write(
            f"Airflow ({args.executor} executor) on {settings.airflow_home}; the UI is at {base_url} "
            f"(passwords of admin, analyst, dpo and auditor in "
            f"{settings.airflow_home / 'simple_auth_manager_passwords.json.generated'}; the CME pages at "
            f"{base_url}/cme/). Ctrl-C stops it.\n"
        )
        sys.stdout.flush()
        return supervisor.run()


def _start_celery(args: argparse.Namespace, settings: Settings, airflow: str, env: dict[str, str],
                  supervisor: Supervisor) -> None:
    from cme_pipeline import airflow_services as services

    broker_url = settings.celery_broker_url
    if broker_url is None:
        redis_server = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")
        if redis_server is None:
            raise ConfigError("redis-server is not installed (Debian: apt-get install redis-server), "
                              "and CME_CELERY_BROKER_URL names no broker")
        spec, broker_url = services.redis_broker(settings, redis_server)
        supervisor.start(spec.name, spec.argv, spec.cwd, spec.env)
        _wait_for_port(broker_url)
    # Create or upgrade the metadata database once, before any component uses it; this also
    # writes airflow.cfg (its Fernet key and JWT secret are then the same for every component).
    migrated = subprocess.run([airflow, "db", "migrate"], env=env, cwd=settings.airflow_home,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if migrated.returncode != 0:
        last = (migrated.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"airflow db migrate failed: {last}")
    for spec in services.celery_set(settings, airflow, env, broker_url, args.workers, args.concurrency):
        supervisor.start(spec.name, spec.argv, spec.cwd, spec.env, redundant=spec.redundant)


def _wait_for_port(url: str) -> None:
    from urllib.parse import urlsplit

    where = urlsplit(url)
    deadline = time.monotonic() + BROKER_READY_WITHIN
    while True:
        try:
            with socket.create_connection((where.hostname or "127.0.0.1", where.port or 6379), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ConfigError("the Redis broker did not start (see its output above)") from None
            time.sleep(0.2)
