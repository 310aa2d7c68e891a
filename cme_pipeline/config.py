"""Settings: the one place that reads the environment (DESIGN.md §2, §7).

``CME_HOME`` (default ``./var``) holds everything; ``CME_DATABASE_URL`` points the LA store at
PostgreSQL (default: one SQLite file per LA under the home); ``CME_AIRFLOW_DATABASE_URL`` points
Airflow's metadata database at PostgreSQL (default: SQLite under the home's ``airflow/``);
``CME_CELERY_BROKER_URL`` is the Celery broker of ``cme airflow --executor celery`` (default: a Redis
it starts itself); ``CME_KEYSTORE`` says where keys live (DESIGN.md §9; default ``file:<home>.keys``, a sibling of the
home and never inside it, so a backup of the home cannot bring back a destroyed key).
Other modules take a ``Settings``; ``home.py`` turns it into services.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cme_pipeline.errors import ConfigError, UsageError

# Why 90 days: long enough for a CME officer's enquiries (Welsh Government guidance expects
# initial checks within 20 school days and follow-up within a term), short enough that data
# about a child who turns out to be in education elsewhere is not kept for a whole year.
DEFAULT_RETENTION_DAYS = 90
# A `possible` match is waiting for a human decision, not for follow-up: two weeks at most.
DEFAULT_REVIEW_DAYS = 14
# A rejected delivery stays (encrypted) in quarantine long enough for the LA and the partner to
# find out why and resend; then its one-time key is destroyed and the file shredded.
DEFAULT_QUARANTINE_DAYS = 30
# The largest delivery read into memory: Cardiff's whole extract is about 10 MB, so this is far
# beyond any real one while keeping a hostile or broken file from exhausting the machine.
DEFAULT_MAX_DELIVERY_BYTES = 256 * 1024 * 1024
# Registers go stale: a child who joined a school after the export was taken is on no register
# the run sees, so is sent to follow-up and their health data kept. Past a term (about 120
# days) a run warns; past two terms (a school year's admissions missed) it refuses.
DEFAULT_REGISTER_WARN_DAYS = 120
DEFAULT_REGISTER_MAX_DAYS = 240
DEFAULT_MATCH_THRESHOLD = 0.95
DEFAULT_POSSIBLE_THRESHOLD = 0.50
# A match deletes the child's health data irreversibly: one mistyped threshold (0.01 for 0.91)
# would "match" every child and destroy the whole delivery. Below this floor nothing runs.
MATCH_THRESHOLD_FLOOR = 0.90
KEYSTORE_SCHEMES = ("file:", "pkcs11:")
CELERY_BROKER_SCHEMES = ("redis://", "rediss://", "amqp://", "amqps://")


@dataclass(frozen=True)
class Settings:
    """Where state lives and how a run behaves."""

    home: Path
    database_url: str | None = None  # None: per-LA SQLite under the home
    airflow_database_url: str | None = None  # None: Airflow's SQLite under the home
    celery_broker_url: str | None = None  # None: `cme airflow --executor celery` starts its own Redis
    match_threshold: float = DEFAULT_MATCH_THRESHOLD
    possible_threshold: float = DEFAULT_POSSIBLE_THRESHOLD
    retention_days: int = DEFAULT_RETENTION_DAYS
    review_days: int = DEFAULT_REVIEW_DAYS
    quarantine_days: int = DEFAULT_QUARANTINE_DAYS
    max_delivery_bytes: int = DEFAULT_MAX_DELIVERY_BYTES
    register_warn_days: int = DEFAULT_REGISTER_WARN_DAYS
    register_max_days: int = DEFAULT_REGISTER_MAX_DAYS
    keystore: str = ""  # CME_KEYSTORE; "" means the default, ``file:<home>.keys``
    # CME_EVIDENCE_PINS: LA code -> the fingerprint or PEM file of its verification key, kept
    # outside the home by the DPO; `cme evidence verify` trusts only these where given.
    evidence_pins: tuple[tuple[str, str], ...] = ()

    # -- layout (DESIGN.md §7) -------------------------------------------------------------
    @property
    def partner_dir(self) -> Path:
        """The simulated NHS side, including ground truth. LA-side code never reads it."""
        return self.home / "partner"

    @property
    def keystore_uri(self) -> str:
        """Where keys live: ``file:/dir`` or an RFC 7512 ``pkcs11:`` URI (DESIGN.md §9)."""
        return self.keystore or f"file:{self.home.parent / (self.home.name + '.keys')}"

    @property
    def airflow_home(self) -> Path:
        """AIRFLOW_HOME for the embedded default."""
        return self.home / "airflow"

    def airflow_metadata_url(self) -> str:
        """SQLAlchemy URL of Airflow's metadata database (run history read by audits)."""
        if self.airflow_database_url:
            return self.airflow_database_url
        return f"sqlite:///{self.airflow_home / 'airflow.db'}"

    def la_dir(self, la_code: str) -> Path:
        """The LA's own area: inbox, quarantine, store, evidence, reports."""
        return self.home / "la" / la_code

    def registers_inbox(self, la_code: str) -> Path:
        """Where an analyst drops register exports for the ``cme_registers`` DAG to import."""
        return self.la_dir(la_code) / "registers_inbox"

    def inbox(self, la_code: str) -> Path:
        """Where encrypted deliveries for the LA land."""
        return self.la_dir(la_code) / "inbox"

    def quarantine(self, la_code: str) -> Path:
        """Where rejected deliveries are kept, still encrypted."""
        return self.la_dir(la_code) / "quarantine"

    def store_dir(self, la_code: str) -> Path:
        """The LA's database directory (embedded SQLite)."""
        return self.la_dir(la_code) / "store"

    def evidence_dir(self, la_code: str) -> Path:
        """The LA's evidence ledger, checkpoints and certificates."""
        return self.la_dir(la_code) / "evidence"

    def reports_dir(self, la_code: str) -> Path:
        """DPO reports."""
        return self.la_dir(la_code) / "reports"

    def la_database_url(self, la_code: str) -> str:
        """SQLAlchemy URL of the LA store: ``CME_DATABASE_URL`` or the LA's own SQLite file.

        Args:
            la_code: the LA's ONS code; every table also carries it, so one PostgreSQL database
                can serve several LAs.
        """
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.store_dir(la_code) / 'cme.sqlite'}"

    def retention_expiry(self, today: dt.date) -> dt.date:
        """The date a retained record made ``today`` must be purged."""
        return today + dt.timedelta(days=self.retention_days)


def check_thresholds(match_threshold: float, possible_threshold: float) -> None:
    """Refuse thresholds that would delete children on a typo: one clear line, nothing runs.

    Args:
        match_threshold: at or above this probability a child is matched (and deleted).
        possible_threshold: at or above this a pair goes to clerical review.

    Raises:
        UsageError: the match threshold is below the floor or above 1, or the review band is
            not below it.
    """
    if not MATCH_THRESHOLD_FLOOR <= match_threshold <= 1.0:
        raise UsageError(
            f"match threshold {match_threshold:g} refused: it must be between {MATCH_THRESHOLD_FLOOR:g} and 1 "
            "(a match deletes the child's health data)"
        )
    if not 0.0 <= possible_threshold <= match_threshold:
        raise UsageError(f"possible threshold {possible_threshold:g} refused: it must be between 0 and the match threshold")


def load_settings(
    home: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build settings from arguments and the environment.

    Args:
        home: an explicit home (``--home``) that wins over ``CME_HOME``.
        environ: the environment to read (defaults to ``os.environ``; tests pass their own).
    """
    env = os.environ if environ is None else environ
    raw_home = home if home is not None else env.get("CME_HOME", "./var")
    home_path = Path(raw_home).expanduser().resolve()
    urls = {name: env.get(name) or None for name in ("CME_DATABASE_URL", "CME_AIRFLOW_DATABASE_URL")}
    for name, url in urls.items():
        if url is not None and not url.startswith(("sqlite", "postgresql")):
            raise ConfigError(f"{name} must be a sqlite:// or postgresql:// URL")
    keystore = env.get("CME_KEYSTORE") or ""
    if keystore and not keystore.startswith(KEYSTORE_SCHEMES):
        raise ConfigError("CME_KEYSTORE must be a file:/path or a pkcs11: URI")
    if keystore.startswith("file:"):
        keys_dir = Path(keystore.removeprefix("file:")).expanduser().resolve()
        if keys_dir == home_path or home_path in keys_dir.parents:
            raise ConfigError("CME_KEYSTORE must not be inside CME_HOME: a backup of the home would keep the keys")
        keystore = f"file:{keys_dir}"
    broker = env.get("CME_CELERY_BROKER_URL") or None
    if broker is not None and not broker.startswith(CELERY_BROKER_SCHEMES):
        raise ConfigError("CME_CELERY_BROKER_URL must be a redis://, rediss://, amqp:// or amqps:// URL")
    pins = tuple(
        (la.strip(), value.strip())
        for la, _, value in (part.partition("=") for part in (env.get("CME_EVIDENCE_PINS") or "").split(";") if part.strip())
    )
    if any(not la or not value for la, value in pins):
        raise ConfigError("CME_EVIDENCE_PINS must be LA=FINGERPRINT_OR_PEM_FILE entries separated by ;")
    return Settings(
        home=home_path,
        evidence_pins=pins,
        database_url=urls["CME_DATABASE_URL"],
        airflow_database_url=urls["CME_AIRFLOW_DATABASE_URL"],
        celery_broker_url=broker,
        keystore=keystore,
    )


DEFAULT_TASK_RETRY_DELAY = 30


def task_retry_delay(environ: Mapping[str, str] | None = None) -> dt.timedelta:
    """How long the DAGs wait before retrying a failed task: ``CME_TASK_RETRY_DELAY`` seconds.

    Default 30 s. A test that kills a worker shortens it; a bad value fails the DAG's parse with
    a one-line error rather than silently using the default.
    """
    raw = (os.environ if environ is None else environ).get("CME_TASK_RETRY_DELAY") or str(DEFAULT_TASK_RETRY_DELAY)
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError("CME_TASK_RETRY_DELAY must be a whole number of seconds, at least 1")
    return dt.timedelta(seconds=int(raw))
