"""The processes ``cme airflow`` runs, and the environment of each.

Two arrangements. The embedded default is Airflow's ``standalone`` (SQLite or PostgreSQL, tasks
run by the LocalExecutor on this machine). ``--executor celery`` is the arrangement of a national
service spread over several machines (docker/docker-compose.yaml is the same one): a Redis broker,
PostgreSQL for Airflow's metadata, the Celery results and the LA stores, an API server, a
scheduler, a DAG processor, a triggerer and N Celery workers, each a process with its own working
directory. They share only what machines would share: the databases, the broker, the key store
(``CME_KEYSTORE``), the home's LA areas and Airflow's configuration and task logs (the home is
the shared volume).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from cme_pipeline.config import Settings
from cme_pipeline.errors import ConfigError

CELERY_EXECUTOR = "CeleryExecutor"
# What each Celery worker says it is, in Airflow's records (TaskInstance.hostname) and Celery's.
WORKER_NAME_VARIABLE = "CME_WORKER_NAME"


@dataclass(frozen=True)
class ServiceSpec:
    """One process to start: its name, command line, working directory and environment."""

    name: str
    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str]
    redundant: bool = False  # one of several interchangeable workers: the rest go on without it


def worker_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` for our workers: ``worker1@host``, as Celery names it.

    Two workers on one machine would otherwise both record the machine's name, and nobody could
    tell from Airflow's records which of them ran a task.
    """
    fqdn = socket.getfqdn()
    name = os.environ.get(WORKER_NAME_VARIABLE)
    return f"{name}@{fqdn}" if name else fqdn


def services_dir(settings: Settings) -> Path:
    """Where the components' own working directories are, under the home's ``airflow/``."""
    return settings.airflow_home / "services"


def base_environment(settings: Settings, environ: dict[str, str], port: int) -> dict[str, str]:
    """What every component sees: Airflow pointed at the home, the API server at ``port``.

    Args:
        settings: the home, its databases and key store.
        environ: the caller's environment (an operator's ``AIRFLOW__…`` setting still wins
            where we only set a default).
        port: the API server's port; tasks reach the execution API there.
    """
    from cme_pipeline.embedded_airflow import airflow_environment

    env = environ | airflow_environment(settings)
    # The embedded default is one small machine: 32 task processes at once (Airflow's default)
    # starve its own API server. `celery_set` raises it to the workers' slots.
    env.setdefault("AIRFLOW__CORE__PARALLELISM", str(2 * (os.cpu_count() or 1)))
    # The log servers' fixed default ports (8793, 8794) let only one home's Airflow run on a
    # machine: a second one (another LA's, or a test beside another) fails to serve its logs.
    # Every component of this set gets the same free ports from this one environment.
    env.setdefault("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", str(free_port()))
    env.setdefault("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", str(free_port()))
    base_url = f"http://localhost:{port}"
    env |= {"AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/"}
    return env


def standalone(settings: Settings, airflow: str, env: dict[str, str]) -> list[ServiceSpec]:
    """The embedded default: ``airflow standalone`` (which starts its own parts) as one component."""
    return [ServiceSpec("airflow standalone", (airflow, "standalone"), settings.airflow_home, env)]


def check_celery_databases(settings: Settings) -> None:
    """Refuse SQLite for either database: Celery workers on other machines cannot share a file.

    Raises:
        ConfigError: naming the setting that must be a PostgreSQL URL.
    """
    for name, url in (("CME_AIRFLOW_DATABASE_URL", settings.airflow_database_url),
                      ("CME_DATABASE_URL", settings.database_url)):
        if not (url or "").startswith("postgresql"):
            raise ConfigError(f"--executor celery needs {name} set to a postgresql:// URL "
                              "(workers on several machines cannot share a SQLite file)")


def redis_broker(settings: Settings, redis_server: str) -> tuple[ServiceSpec, str]:
    """A Redis of our own as the Celery broker: loopback only, a password, nothing saved outside its dir.

    Its directory is 0700 and its configuration (which holds the password, so it is not on a
    command line ``ps`` shows) 0600. Queued messages are not persisted: a restart of ``cme
    airflow`` starts with an empty queue and the scheduler queues again what is due.

    Args:
        settings: the home (the broker's directory is under ``airflow/services/redis``).
        redis_server: the ``redis-server`` program.

    Returns:
        The component to start and the broker URL the other components use.
    """
    directory = services_dir(settings) / "redis"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    port = free_port()
    password = secrets.token_urlsafe(24)
    conf = directory / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join([
            "bind 127.0.0.1", f"port {port}", f'dir "{directory}"', 'save ""', "appendonly no",
            f"requirepass {password}", "protected-mode yes", "daemonize no", 'logfile ""',
            "",
        ]))
    return ServiceSpec("redis", (redis_server, str(conf)), directory, {"PATH": os.environ.get("PATH", "")}), (
        f"redis://:{password}@127.0.0.1:{port}/0"
    )


def celery_set(settings: Settings, airflow: str, env: dict[str, str], broker_url: str,
               workers: int, concurrency: int) -> list[ServiceSpec]:
    """The CeleryExecutor arrangement: API server, scheduler, DAG processor, triggerer, workers.

    Args:
        settings: the home (PostgreSQL for both databases: ``check_celery_databases``).
        airflow: the ``airflow`` program.
        env: ``base_environment``.
        broker_url: the Celery broker.
        workers: how many Celery workers.
        concurrency: task slots per worker.
    """
    metadata = settings.airflow_metadata_url()
    env = env | {
        "AIRFLOW__CORE__EXECUTOR": CELERY_EXECUTOR,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "cme_pipeline.celery_worker.CELERY_CONFIG",
    }
    if "AIRFLOW__CORE__PARALLELISM" not in os.environ:  # an operator's setting still wins
        env["AIRFLOW__CORE__PARALLELISM"] = str(workers * concurrency)
    root = services_dir(settings)
    specs = [
        ServiceSpec("api-server", (airflow, "api-server", "--port", env["AIRFLOW__API__PORT"]), root / "api-server", env),
        ServiceSpec("scheduler", (airflow, "scheduler"), root / "scheduler", env),
        ServiceSpec("dag-processor", (airflow, "dag-processor"), root / "dag-processor", env),
        ServiceSpec("triggerer", (airflow, "triggerer"), root / "triggerer", env),
    ]
    for number in range(1, workers + 1):
        name = f"worker{number}"
        # Task logs go to the shared log folder, which the API server reads: no log server per
        # worker (two on one machine would want the same port).
        specs.append(ServiceSpec(
            name, (airflow, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", str(concurrency),
                   "--skip-serve-logs"),
            root / "workers" / name, env | {WORKER_NAME_VARIABLE: name}, redundant=True,
        ))
    return specs


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
