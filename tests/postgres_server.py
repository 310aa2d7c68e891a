"""A real PostgreSQL server for tests, started from the machine's binaries on a loopback port.

No mocks: the store, the forensic scans and the Airflow metadata tests run against the same
server software production uses. When the binaries are missing the tests that need the server
skip with a reason, except under ``CI=true``, where a missing server is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "cme"


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found and all(shutil.which(b) for b in BINARIES):
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if all((Path(candidate) / b).exists() for b in BINARIES):
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running cluster: its data directory, server log and a way to reach it."""

    bin_dir: Path
    root: Path
    port: int
    run_as: pwd.struct_passwd | None

    @property
    def datadir(self) -> Path:
        """The cluster's data directory (``base/``, ``pg_wal/``, ...)."""
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        """The server's log file."""
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its sessions."""
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def checkpoint(self) -> None:
        """Flush shared buffers to the data files so a byte scan sees what the server holds."""
        self._admin("CHECKPOINT")

    def run_tool(self, *args: str) -> None:
        """Run one of the server's tools (``pg_basebackup``...) as the cluster's owner."""
        self._run(*args)

    def start_existing(self) -> None:
        """Start the server on the data directory as it is (after a restore)."""
        self._start()

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            preexec_fn=self._drop_privileges if self.run_as else None,  # noqa: PLW1509
        )

    def _drop_privileges(self) -> None:
        # initdb and postgres refuse to run as root; the machines here run tests as root.
        assert self.run_as is not None
        os.setgid(self.run_as.pw_gid)
        os.setuid(self.run_as.pw_uid)

    def start(self) -> None:
        """initdb (trust auth on loopback only) and start the server, waiting until it accepts."""
        self._run("initdb", "-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")
        self._start()

    def _start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", options, "-w", "start")

    def crash_and_restart(self) -> None:
        """Kill the server as a power cut would (immediate shutdown: no checkpoint, open
        transactions cut off), then start it again; it recovers from its WAL."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        self._start()

    def terminate_sessions(self, database: str) -> None:
        """Cut every connection to ``database`` (as a failover or a network drop would)."""
        self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")


def start_server() -> PostgresServer | None:
    """Start a throw-away cluster, or None when the binaries are not installed."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        return None
    run_as = None
    if os.geteuid() == 0:
        try:
            run_as = pwd.getpwnam("postgres")
        except KeyError:
            run_as = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="cme-pg-"))
    if run_as is not None:
        os.chown(root, run_as.pw_uid, run_as.pw_gid)
    root.chmod(0o700)
    server = PostgresServer(bin_dir=bin_dir, root=root, port=_free_port(), run_as=run_as)
    server.start()
    return server


def _missing() -> None:
    # `make test` installs the package; a test is never skipped for a missing one.
    pytest.fail("PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed; "
                "run: sudo apt-get install -y postgresql")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the test session, removed afterwards."""
    server = start_server()
    if server is None:
        _missing()
        return
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for one test (SQLAlchemy URL)."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    postgres_server.drop_database(name)
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PostgresServer]:
    """A cluster for one test module alone: for tests that restore a base backup over its data
    directory or scan every file of it, so nothing of another test is in the way."""
    server = start_server()
    if server is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
