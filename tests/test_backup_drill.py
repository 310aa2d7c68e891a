"""Backup-restore drill: copies of the LA's files cannot bring back a matched child.

Tried as someone holding ordinary copies of everything would: copies of the home and of the
database (SQLite files with their WAL; on PostgreSQL a ``pg_basebackup`` of the cluster) are
taken at every phase of a run: delivery waiting, staged, matched, minimised. After the run each
copy is restored in place, with the live key store (which no backup of the home contains), and:

- the delivery in the restored inbox does not open (its one-time key is destroyed), and a run on
  it quarantines it instead of processing it again;
- staged rows do not decrypt (the delivery's data key is destroyed), nor does the run's sealed
  scratch of match outcomes;
- a byte scan of the restored home, the restored database files and the key store finds none of
  the delivery's NHS numbers;
- retained children in the copy taken after minimisation still read correctly.

On SQLite and on a real PostgreSQL server, with the ``file:`` and the ``pkcs11:`` (SoftHSM2)
key stores.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from postgres_server import SUPERUSER, PostgresServer
from residue import Probe, scan
from softhsm import keystore_env

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.crypto import open_delivery
from cme_pipeline.crypto.scratch import read_sealed
from cme_pipeline.errors import IntegrityError, KeyUnavailable
from cme_pipeline.home import close_homes, open_home
from cme_pipeline.la import minimise
from cme_pipeline.la.intake import DeliveryQuarantined, open_delivery_file
from cme_pipeline.pipeline import steps
from cme_pipeline.runs import read_state
from cme_pipeline.simulate.wales import simulate_to_home

LA = "W06000015"
CHILDREN = 500
RUN = "manual__drill"
PHASES = ("waiting", "staged", "matched", "minimised")


@dataclass
class Drill:
    """One run with a copy taken at every phase."""

    settings: Settings
    root: Path
    server: PostgresServer | None
    copies: dict[str, Path] = field(default_factory=dict)
    pg_copies: dict[str, Path] = field(default_factory=dict)

    def take_copy(self, phase: str) -> None:
        """Copy the home and the database as an ordinary backup would."""
        target = self.root / "backups" / phase
        shutil.copytree(self.settings.home, target / "home", symlinks=True)
        if self.server is not None:  # written by the cluster's owner, inside its own directory
            backup = self.server.root / "backups" / f"{self.settings.home.parent.name}-{phase}"
            self.server.run_tool("pg_basebackup", "-D", str(backup), "-h", "127.0.0.1",
                                 "-p", str(self.server.port), "-U", SUPERUSER, "-X", "stream", "-c", "fast")
            self.pg_copies[phase] = backup
        self.copies[phase] = target

    def restore(self, phase: str) -> None:
        """Put the copy back in place of the live home and database; the key store stays live."""
        close_homes()
        shutil.rmtree(self.settings.home)
        shutil.copytree(self.copies[phase] / "home", self.settings.home, symlinks=True)
        if self.server is not None:
            self.server.stop()
            shutil.rmtree(self.server.datadir)
            subprocess.run(["cp", "-a", str(self.pg_copies[phase]), str(self.server.datadir)], check=True)
            self.server.start_existing()

    def scan_roots(self) -> list[Path]:
        """Everything the restored LA side holds (not the simulated partner), and the key store."""
        roots = [p for p in self.settings.home.iterdir() if p.name != "partner"]
        if self.server is not None:
            roots.append(self.server.datadir)
        uri = self.settings.keystore_uri
        roots.append(Path(uri.removeprefix("file:")) if uri.startswith("file:")
                     else Path(os.environ["SOFTHSM2_CONF"]).parent / "tokens")
        return roots


def _run_with_copies(drill: Drill) -> None:
    params = {"la_codes": [LA]}
    drill.take_copy("waiting")
    steps.open_delivery(LA, RUN, params)
    drill.take_copy("staged")
    steps.check_registers(LA, RUN, params)
    steps.match(LA, RUN, params)
    drill.take_copy("matched")
    steps.minimise(LA, RUN, params)
    drill.take_copy("minimised")
    steps.check_retained(LA, RUN, params)
    steps.evidence(LA, RUN, params)


def _retained(settings: Settings) -> pd.DataFrame:
    frame = minimise.list_retained(open_home(settings), LA, RUN)
    return frame.sort_values("health_record_id").reset_index(drop=True)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.parametrize("keystore_backend", ["file", "pkcs11"])
def test_no_copy_of_the_las_files_brings_back_a_matched_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
    keystore_backend: str, database: str,
) -> None:
    server: PostgresServer | None = request.getfixturevalue("own_cluster") if database == "postgresql" else None
    env = keystore_env(keystore_backend)
    if server is not None:
        env["CME_DATABASE_URL"] = server.create_database(f"drill_{keystore_backend}")
    for name in ("CME_KEYSTORE", "CME_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    monkeypatch.setenv("CME_HOME", str(home))
    settings = load_settings(home, environ=env)
    simulate_to_home(settings, [LA], children=CHILDREN, seed=5)
    (delivery,) = settings.inbox(LA).glob("*.cmedelivery")
    blob = delivery.read_bytes()
    _, plaintext = open_delivery(open_home(settings).keys, blob, la_code=LA)
    extract = pd.read_csv(io.BytesIO(plaintext), dtype=str, keep_default_na=False)
    probe = Probe.from_extract(extract)
    del plaintext

    drill = Drill(settings, tmp_path, server)
    _run_with_copies(drill)
    state = read_state(open_home(settings).run(LA, RUN))
    assert state["completed"] and state["matched"] > 0 and state["retained"] > 0
    live_retained = _retained(settings)
    assert len(live_retained) == state["retained"]
    keys = open_home(settings).keys
    with pytest.raises(IntegrityError, match="does not hold"):  # the original file, kept elsewhere
        open_delivery(keys, blob, la_code=LA)

    for phase in PHASES:
        drill.restore(phase)
        home_services = open_home(settings)
        restored = list(settings.inbox(LA).glob("*.cmedelivery"))
        assert [p.read_bytes() for p in restored] == [blob], phase  # the copy does hold the delivery
        if phase != "waiting":
            held = minimise.staged_count(home_services, LA, state["delivery_id"])
            assert held > 0 if phase != "minimised" else held == 0, phase
            if held:
                with pytest.raises(KeyUnavailable):
                    minimise.load_staged(home_services, LA, state["delivery_id"])
        if phase == "matched":
            paths = home_services.run(LA, RUN)
            assert paths.outcomes_file.is_file()
            with pytest.raises(KeyUnavailable):
                read_sealed(home_services.keys, paths.scratch_key, paths.outcomes_file)
        if phase == "minimised":
            pd.testing.assert_frame_equal(_retained(settings), live_retained)
        if server is not None:
            server.checkpoint()
        assert scan(drill.scan_roots(), probe) == {}, phase
        # The project's own path: a run on the restored inbox quarantines, never processes again.
        with pytest.raises(DeliveryQuarantined, match="does not hold"):
            open_delivery_file(home_services, LA, restored[0], state["year_start"])
