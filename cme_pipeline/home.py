"""The composition root: from ``Settings`` it builds, once per process, the services every
LA-side module and pipeline step works with (DESIGN.md §2).

- the key store, by backend (``CME_KEYSTORE``, DESIGN.md §9): the only place that names a
  concrete key store class;
- the LA store engines, cached per database URL, each with its schema created once;
- run partitions (``RunPaths``) of one LA's run.

Everything else receives a ``Home`` (or the key store from it) instead of constructing these.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy.engine import Engine

from cme_pipeline.config import Settings
from cme_pipeline.crypto.keystore import FileKeyStore, KeyStore
from cme_pipeline.durable import tighten
from cme_pipeline.errors import ConfigError
from cme_pipeline.runs import RunPaths
from cme_pipeline.store.db import create_store_engine, create_tables


def open_keystore(uri: str) -> KeyStore:
    """The key store a ``CME_KEYSTORE`` URI names.

    Args:
        uri: ``file:/dir`` (the embedded default) or an RFC 7512 ``pkcs11:`` URI.
    """
    if uri.startswith("file:"):
        return FileKeyStore(Path(uri.removeprefix("file:")))
    if uri.startswith("pkcs11:"):
        from cme_pipeline.crypto.pkcs11_store import Pkcs11KeyStore

        return Pkcs11KeyStore(uri)
    raise ConfigError("CME_KEYSTORE must be a file:/path or a pkcs11: URI")


class StoreEngines:
    """LA store engines, one per database URL, each with its schema created once."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> Engine:
        """The engine of ``url``, created (with its tables) on first use."""
        with self._lock:
            engine = self._engines.get(url)
            if engine is None:
                engine = create_store_engine(url)
                create_tables(engine)
                self._engines[url] = engine
        return engine

    def close(self) -> None:
        """Dispose of every engine; the next ``get`` opens a fresh one."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.dispose()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's pooled connections without closing its sockets."""
        for engine in self._engines.values():
            engine.dispose(close=False)  # SQLAlchemy's advice for multiprocessing
        self._engines = {}
        self._lock = threading.Lock()


def open_partner_keystore(settings: Settings) -> KeyStore:
    """The simulated NHS partner's own key store, in its own area (``partner/keys``).

    The LA's key store never holds the partner's private key; the partner never holds the LA's.
    """
    return FileKeyStore(settings.partner_dir / "keys")


@dataclass(frozen=True)
class Home:
    """The services of one home: settings, key store, LA store engines. Build with ``open_home``."""

    settings: Settings
    keys: KeyStore
    engines: StoreEngines = field(repr=False)

    def store(self, la_code: str) -> Engine:
        """The LA's store engine (on PostgreSQL every LA shares one; every table has the LA code).

        Args:
            la_code: the LA's ONS code.
        """
        return self.engines.get(self.settings.la_database_url(la_code))

    def run(self, la_code: str, run_id: str) -> RunPaths:
        """Where one LA's run keeps its state and scratch."""
        return RunPaths(self.settings, la_code, run_id)


_HOMES: dict[tuple[Path, str | None, str], Home] = {}
_HOMES_LOCK = threading.Lock()


PRIVATE_UMASK = 0o077
_SECURED: set[Path] = set()


def secure_process(settings: Settings) -> None:
    """Owner-only files from now on, and the home (and a ``file:`` key store) made owner-only.

    Sets the process umask, so everything this process and what it starts (Airflow's database,
    logs and workers included) creates is 0600/0700 whatever the caller's umask, then tightens
    what is already there. Called at the start of every command and whenever services are built.

    Args:
        settings: the home to secure.
    """
    os.umask(PRIVATE_UMASK)
    if settings.home not in _SECURED:  # the walk once per home and process, not per command step
        tighten(settings.home)  # a home that does not exist yet will be made under the new umask
        _SECURED.add(settings.home)


def open_home(settings: Settings) -> Home:
    """The process's ``Home`` for these settings, built on first use and then reused.

    Homes are keyed by where state lives (home, database, key store), so settings that differ
    only in a run's thresholds share one set of engines and one key store.

    Args:
        settings: the home, databases and key store to wire.
    """
    key = (settings.home, settings.database_url, settings.keystore_uri)
    with _HOMES_LOCK:
        home = _HOMES.get(key)
        if home is None:
            secure_process(settings)
            home = Home(settings, open_keystore(settings.keystore_uri), StoreEngines())
            _HOMES[key] = home
    if home.settings != settings:  # same services, this run's thresholds
        return replace(home, settings=settings)
    return home


def close_homes() -> None:
    """Dispose of every engine and key store session this process opened (tests call this)."""
    with _HOMES_LOCK:
        homes = list(_HOMES.values())
        _HOMES.clear()
    for home in homes:
        home.engines.close()
        home.keys.close()


def _after_fork_in_child() -> None:
    for home in _HOMES.values():
        home.engines.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
