"""End to end through the real Airflow DAG: simulate two LAs, break one delivery, `cme run` both.

Once on the embedded default (SQLite store and Airflow metadata, ``file:`` key store) and once
with both on a real PostgreSQL server started for the test and every key in a SoftHSM2 token. The good LA completes with counts that reconcile and
evidence that verifies; the bad one is quarantined. Then every byte the LA side can reach
(home, Airflow metadata and task logs, PostgreSQL data files, WAL and server log, temp files)
is scanned for the run's NHS numbers and for the surname + date of birth of children the LA
never held before: zero plaintext hits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from postgres_server import PostgresServer, start_server
from residue import Probe, scan
from softhsm import new_token

from cme_pipeline import evidence
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.crypto import held_prekeys, open_delivery
from cme_pipeline.evidence import ledger
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise
from cme_pipeline.quality.extract_csv import parse_extract
from cme_pipeline.runs import RunPaths, read_state

GOOD, BAD = "W06000015", "W06000001"  # Cardiff, Isle of Anglesey
CHILDREN = 3000


@dataclass
class Finished:
    """A finished `cme run` and everything the assertions need."""

    settings: Settings
    done: subprocess.CompletedProcess[str]
    run_id: str
    extracts: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    scan_roots: list[Path]
    probe: Probe  # the run's NHS numbers; children on no register the LA side did not already show
    server: PostgresServer | None
    bad_run_id: str  # the bad LA's run: `cme run` may give each of its worker processes its own


def _cme(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cme_pipeline.cli", "--home", str(home), *args],
        capture_output=True, text=True, env=env, check=False,
    )


def _open_inbox(settings: Settings, la: str) -> pd.DataFrame:
    """The partner's plaintext, read in the test only, to know what to look for."""
    path = next(settings.inbox(la).glob("*.cmedelivery"))
    _, plaintext = open_delivery(open_home(settings).keys, path.read_bytes(), la_code=la)
    return parse_extract(plaintext)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def finished(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    root = tmp_path_factory.mktemp(f"e2e-{request.param}")
    home, tmp = root / "home", root / "tmp"
    tmp.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(tmp), "HOME": str(root)}
    server = None
    if request.param == "postgresql":
        server = start_server()  # its own cluster, so nothing of another test is in its files
        if server is None:
            pytest.fail("PostgreSQL server binaries are not installed; run: sudo apt-get install -y postgresql")
        env["CME_DATABASE_URL"] = server.create_database("cme")
        env["CME_AIRFLOW_DATABASE_URL"] = server.create_database("airflow")
        # The production-like variant keeps every key in a PKCS#11 token (SoftHSM2).
        env["CME_KEYSTORE"] = new_token()
        env["SOFTHSM2_CONF"] = os.environ["SOFTHSM2_CONF"]
    try:
        made = _cme(env, home, "simulate", "--la", f"{GOOD},{BAD}", "--children", str(CHILDREN), "--seed", "21")
        assert made.returncode == 0, made.stderr
        settings = load_settings(home, environ={k: v for k, v in env.items() if k.startswith("CME_")})
        extracts = {la: _open_inbox(settings, la) for la in (GOOD, BAD)}
        truth = {
            la: pd.read_csv(settings.partner_dir / "truth" / f"{la}.csv", dtype=str, keep_default_na=False)
            for la in (GOOD, BAD)
        }
        # What the scan looks for, less the children the LA's own registers already show side
        # by side (a registered twin's entry, a namesake in the next row): taken before the run.
        extract = pd.concat(extracts.values(), ignore_index=True)
        every_truth = pd.concat(truth.values(), ignore_index=True)
        unregistered = extract[extract["nhs_number"].isin(set(every_truth.loc[every_truth["registers"] == "", "nhs_number"]))]
        if server is not None:
            server.checkpoint()
        la_side = [p for p in home.iterdir() if p.name != "partner"] + [tmp]
        la_side += [server.datadir, server.logfile] if server else []
        probe = Probe.from_extract(extract, unregistered).without_people_already_held(la_side)
        bad = next(settings.inbox(BAD).glob("*.cmedelivery"))
        blob = bytearray(bad.read_bytes())
        blob[-10] ^= 0xFF  # one flipped bit of ciphertext: the delivery must be refused whole
        bad.write_bytes(bytes(blob))
        done = _cme(env, home, "run", "--la", f"{GOOD},{BAD}")
        runs = sorted((settings.store_dir(GOOD) / "runs").iterdir())
        assert len(runs) == 1, done.stderr
        run_id = json.loads((runs[0] / "state.json").read_text())["run_id"]
        (bad_run,) = (settings.store_dir(BAD) / "runs").iterdir()
        bad_run_id = json.loads((bad_run / "state.json").read_text())["run_id"]
        if server is not None:
            server.checkpoint()
        roots = [home, tmp] + ([server.datadir, server.logfile] if server else [])
        yield Finished(settings, done, run_id, extracts, truth, roots, probe, server, bad_run_id)
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)


def test_good_la_completes_and_bad_la_is_quarantined(finished: Finished) -> None:
    settings, done = finished.settings, finished.done
    assert done.returncode == 3
    # Progress goes to stderr too; the failure is one line of its own, and the last.
    err = done.stderr.strip().splitlines()
    failures = [line for line in err if line.startswith("cme run:")]
    assert failures == [err[-1]], done.stderr
    assert BAD in err[-1] and "rejected and quarantined" in err[-1] and GOOD not in err[-1]
    assert err[-1].count("rejected") == 1, err[-1]
    assert "Traceback" not in done.stderr
    assert len(list(settings.quarantine(BAD).glob("*.cmedelivery"))) == 1
    assert not list(settings.inbox(BAD).glob("*.cmedelivery"))
    # The processed delivery is shredded too, and its one-time key destroyed.
    assert not list(settings.inbox(GOOD).glob("*.cmedelivery"))
    state = read_state(RunPaths(settings, GOOD, finished.run_id))
    assert state["prekey_id"] not in held_prekeys(open_home(settings).keys, GOOD)
    assert GOOD in done.stdout and "report:" in done.stdout


def test_counts_reconcile_and_agree_with_the_truth(finished: Finished) -> None:
    settings = finished.settings
    state = read_state(RunPaths(settings, GOOD, finished.run_id))
    received = len(finished.extracts[GOOD])
    assert state["received"] == received
    assert state["matched"] + state["possible"] + state["unmatched"] == received
    assert state["retained"] == state["possible"] + state["unmatched"]
    truth = finished.truth[GOOD]
    registered = int((truth["registers"] != "").sum())
    # Matching is probabilistic; on default noise it finds nearly every registered child and
    # never more children than are registered.
    assert 0.95 * registered <= state["matched"] <= registered
    retained = minimise.list_retained(open_home(settings), GOOD, finished.run_id)
    assert len(retained) == state["retained"]
    unregistered = set(truth.loc[truth["registers"] == "", "nhs_number"])
    assert unregistered <= set(retained["nhs_number"]), "an unregistered child was lost"
    assert minimise.staged_count(open_home(settings), GOOD, state["delivery_id"]) == 0


def test_evidence_verifies_and_records_the_rejection(finished: Finished) -> None:
    settings = finished.settings
    report = evidence.verify(settings, open_home(settings).keys)
    assert report.ok, report.problems
    state = read_state(RunPaths(settings, GOOD, finished.run_id))
    certificate = json.loads(Path(state["certificate"]).read_text())
    stated = certificate["facts"]
    assert stated["received"] == state["received"] and stated["retained"] == state["retained"]
    assert certificate["matched"] == state["matched"] and stated["data_key_id"] == state["data_key_id"]
    matched = [e for e in ledger.run_entries(settings, GOOD, finished.run_id) if e["event"] == "matched"]
    assert matched[0]["facts"]["review_decisions_learned_from"] == 0  # a first run: nothing decided yet
    bad_state = read_state(RunPaths(settings, BAD, finished.bad_run_id))
    assert bad_state["check"] == "integrity" and "SHA-256" in bad_state["rejected"]
    events = [e["event"] for e in ledger.run_entries(settings, BAD, finished.bad_run_id)]
    assert "delivery_rejected" in events and "minimised" not in events, events
    assert Path(state["report"]).is_file()


def test_no_personal_data_anywhere_the_la_side_can_reach(finished: Finished) -> None:
    settings, probe = finished.settings, finished.probe
    assert probe.people >= 50, "too few children on no register to make the scan meaningful"
    roots = [r for r in finished.scan_roots if r != settings.partner_dir]
    hits = {path: kinds for path, kinds in scan(roots, probe).items()
            if not Path(path).is_relative_to(settings.partner_dir)}
    assert hits == {}
    # The scanner can see a plaintext value where one is.
    extract = pd.concat(finished.extracts.values(), ignore_index=True)
    dob, people = next(iter(probe.people_by_dob.items()))
    child = extract[(extract["dob"] == dob.decode()) & (extract["surname"].str.lower() == people[0][0].decode())].iloc[0]
    planted = settings.home / "planted.txt"
    planted.write_text(f"{extract['nhs_number'].iloc[0]}\n{child['surname']},{child['dob']},{child['postcode']}\n")
    try:
        assert scan([settings.home], probe).get(str(planted)) == ["nhs_number", "name+dob+postcode"]
    finally:
        planted.unlink()


def test_airflow_history_and_metadata_hold_ids_and_counts_only(finished: Finished) -> None:
    import sqlalchemy as sa

    settings = finished.settings
    probe = Probe.from_extract(pd.concat(finished.extracts.values(), ignore_index=True))
    engine = sa.create_engine(settings.airflow_metadata_url())
    tables = ["xcom", "rendered_task_instance_fields", "dag_run", "log", "asset_event", "task_instance"]
    rows = 0
    with engine.connect() as conn:
        meta = sa.MetaData()
        meta.reflect(conn, only=tables)
        for name in tables:
            for row in conn.execute(sa.select(meta.tables[name])):
                rows += 1
                assert not probe.hits(json.dumps([str(v) for v in row]).encode()), name
        xcoms = conn.execute(sa.text("SELECT count(*) FROM xcom")).scalar_one()
    engine.dispose()
    assert rows > 0 and xcoms > 0
