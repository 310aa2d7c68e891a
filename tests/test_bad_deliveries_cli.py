"""The catalogue of bad deliveries, driven through the commands an operator uses.

``tests/test_bad_deliveries.py`` feeds each kind of bad delivery through the library. Here the
same ``CATALOGUE`` goes through the real commands: every bad delivery is packaged by
``cme partner package`` from a plaintext CSV, each in the inbox of its own Welsh LA; one LA also
gets a good delivery behind its bad one. Then ONE ``cme run --la all`` runs the real
``cme_matching`` DAG over every LA at once (it loops: a second DAG run picks up the good
delivery). Each bad delivery must be refused with its own one-line ``cme run:`` message, sit
byte-for-byte in its LA's quarantine, leave nothing retained or staged, be recorded in the
evidence ledger, and not stop the good delivery; no personal value may reach any file of the home.

How each case is packaged: the catalogue's own ``make`` functions are reused unchanged, with the
two packaging functions they call (``_package`` and ``package_extract`` of the catalogue module)
swapped for one that writes the plaintext CSV to a file and runs ``cme partner package`` on it
(``--extract-date``, ``--declare-rows`` and the hidden ``--signing-key`` carry the catalogue's
options). So the command packages every case; the few it cannot produce by itself are made the
way the catalogue makes them, after the command has run:

* tampered ciphertext: packaged by the command, then one ciphertext byte flipped in the file;
* wrong signing key: packaged by the command with ``--signing-key`` naming a rogue key (the LA
  has pinned the real partner key, as in the library test);
* manifest row count mismatch: packaged by the command with ``--declare-rows``;
* wrong LA code: packaged by the command for Gwynedd, then the file moved into Cardiff's inbox.

No case falls back to calling ``package_extract`` itself; the test checks that every case ran the
command at least once.

The batch is made once per key store, ``[file]`` and ``[pkcs11]`` (a SoftHSM2 token: the LA's
receiving keys, pins and evidence key live there; the simulated partner keeps its own file keys
under ``partner/``). The byte scan covers the key store's files too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import test_bad_deliveries as catalogue
from fixtures_quality import EXTRACT_DATE, LA, YEAR, GoodExtract
from softhsm import keystore_files, use_keystore
from test_bad_deliveries import CATALOGUE

from cme_pipeline.areas import LA_CODES
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.crypto import DELIVERY_SUFFIX
from cme_pipeline.evidence import ledger
from cme_pipeline.home import open_home
from cme_pipeline.la import minimise
from cme_pipeline.la.intake import REJECTION_SUFFIX
from cme_pipeline.runs import RunPaths, la_outcome, read_state, waiting_deliveries
from cme_pipeline.schemas import HEALTH_EXTRACT
from cme_pipeline.simulate import simulate_la
from cme_pipeline.store import replace_register

pytestmark = pytest.mark.airflow

# Swansea gets a bad delivery and, behind it, a good one (a later extract date sorts it after).
GOOD_LA = "W06000011"
GOOD_DATE = EXTRACT_DATE + dt.timedelta(days=1)
# Cases whose ``make`` puts the delivery into a fixed LA's inbox itself.
FIXED_HOSTS = {"wrong LA code": LA}  # _addressed_elsewhere moves Gwynedd's delivery to Cardiff
# Values of the bad deliveries that are not in GoodExtract.needles() (as the library test).
EXTRA_NEEDLES = ["HYPERLINK", "17/05/2015", "1990-05-17", "asthma", "99912X4567"]
REGISTER_SEED = 23


def _cme(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cme_pipeline.cli", "--home", str(home), *args],
        capture_output=True, text=True, env=env, check=False,
    )


def _hosts() -> dict[str, str]:
    """Each case's own LA: the fixed ones first, then the others in order, Swansea first."""
    free = [GOOD_LA] + [c for c in LA_CODES if c != GOOD_LA and c not in FIXED_HOSTS.values()]
    assert len(CATALOGUE) <= len(LA_CODES), "more cases than LAs: give an LA two bad deliveries"
    hosts = {}
    for case in CATALOGUE:
        hosts[case] = FIXED_HOSTS[case] if case in FIXED_HOSTS else free.pop(0)
    assert len(set(hosts.values())) == len(hosts)
    return hosts


@dataclass
class Packager:
    """Stands in for the catalogue's packaging functions: runs ``cme partner package``."""

    env: dict[str, str]
    home: Path
    plain_dir: Path
    target: str = ""  # the LA of the case being made
    calls: int = 0

    def command(self, la_code: str, plaintext: bytes, *, extract_date: dt.date | None = None,
                declared_rows: int | None = None, signing_key: str | None = None) -> Path:
        """Write the plaintext where an analyst would and package it with the command."""
        self.calls += 1
        plain = self.plain_dir / f"extract-{la_code}-{self.calls}.csv"
        plain.write_bytes(plaintext)
        args = ["partner", "package", str(plain), "--la", la_code]
        if extract_date is not None:
            args += ["--extract-date", extract_date.isoformat()]
        if declared_rows is not None:
            args += ["--declare-rows", str(declared_rows)]
        if signing_key is not None:
            args += ["--signing-key", signing_key]
        done = _cme(self.env, self.home, *args)
        plain.unlink()
        assert done.returncode == 0, done.stderr
        path = Path(done.stdout.strip())
        assert path.parent == load_settings(self.home, environ={}).inbox(la_code) and path.is_file()
        return path

    def package(self, settings: Settings, plaintext: bytes, **kw: Any) -> Path:
        """Replaces ``test_bad_deliveries._package`` (always the fixture's extract date).

        ``--extract-date`` matters: by default the command dates the extract today, and then the
        "future date" case's date of birth (40 days after the fixture's extract date) would no
        longer be after the extract date and the delivery would fail another check.
        """
        return self.command(self.target, plaintext, extract_date=EXTRACT_DATE, **kw)

    def package_extract(self, settings: Settings, la_code: str, plaintext: bytes, **kw: Any) -> Path:
        """Replaces ``package_extract`` as the catalogue module calls it."""
        return self.command(la_code, plaintext, **kw)


@dataclass(frozen=True)
class Delivered:
    """One bad delivery as packaged: where, and its bytes."""

    la: str
    path: Path
    sealed: bytes
    commands: int  # how many times the case ran `cme partner package`

    @property
    def delivery_id(self) -> str:
        return self.path.name.removesuffix(DELIVERY_SUFFIX)


@dataclass
class Batch:
    """The home after one `cme run --la all` over every bad delivery and one good one."""

    settings: Settings
    env: dict[str, str]
    roots: list[Path]
    cases: dict[str, Delivered]
    good: Path
    good_rows: int
    good_numbers: list[str]
    done: subprocess.CompletedProcess[str]
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # LA -> run states

    def rejected_state(self, la: str) -> dict[str, Any]:
        states = [s for s in self.runs[la] if "rejected" in s]
        assert len(states) == 1, self.runs[la]
        return states[0]


def _without(frame: pd.DataFrame, needles: list[str]) -> pd.DataFrame:
    """Register rows holding none of the needles (the scan must not find the LA's own data)."""
    rows = ["\x1f".join(map(str, row)) for row in frame.itertuples(index=False)]
    keep = [not any(n in row for n in needles) for row in rows]
    return frame.loc[pd.Series(keep, index=frame.index, dtype=bool)].reset_index(drop=True)


def _write_registers(settings: Settings, la: str, needles: list[str]) -> pd.DataFrame:
    """Put a small simulated set of registers in the LA's store; return its simulated extract."""
    sim = simulate_la(la, children=60, seed=REGISTER_SEED, year_start=YEAR)
    engine = open_home(settings).store(la)
    try:
        for source, frame in sim.registers.items():
            replace_register(engine, la, source, _without(frame, needles), as_of=dt.date.today())
    finally:
        engine.dispose()
    return sim.extract[list(HEALTH_EXTRACT)].reset_index(drop=True)


def _run_states(settings: Settings, la: str) -> list[dict[str, Any]]:
    """The state of every run that touched the LA, read where the run keeps it."""
    states = []
    for found in sorted((settings.store_dir(la) / "runs").glob("*/state.json")):
        paths = RunPaths(settings, la, json.loads(found.read_text())["run_id"])
        assert paths.state_file == found
        states.append(read_state(paths))
    return states


@pytest.fixture(scope="module")
def batch(
    tmp_path_factory: pytest.TempPathFactory, good_extract: GoodExtract, module_keystore_backend: str
) -> Iterator[Batch]:
    with pytest.MonkeyPatch.context() as keystore:
        keystore_env = use_keystore(keystore, module_keystore_backend)
        yield _batch(tmp_path_factory.mktemp(f"bad-cli-{module_keystore_backend}"), good_extract, keystore_env)


def _batch(root: Path, good_extract: GoodExtract, keystore_env: dict[str, str]) -> Batch:
    home, tmp, plain = root / "home", root / "tmp", root / "plain"
    tmp.mkdir()
    plain.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(tmp), "HOME": str(root)} | keystore_env
    if keystore_env:  # the commands' SoftHSM2 must read the session's token directory
        env["SOFTHSM2_CONF"] = os.environ["SOFTHSM2_CONF"]
    settings = load_settings(home, environ=keystore_env)
    needles = good_extract.needles() + EXTRA_NEEDLES
    hosts = _hosts()
    extracts = {la: _write_registers(settings, la, needles) for la in LA_CODES}

    packager = Packager(env, home, plain)
    cases: dict[str, Delivered] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catalogue, "_package", packager.package)
        patch.setattr(catalogue, "package_extract", packager.package_extract)
        for case, bad in CATALOGUE.items():
            packager.target, before = hosts[case], packager.calls
            path = bad.make(settings, good_extract)
            cases[case] = Delivered(hosts[case], path, path.read_bytes(), packager.calls - before)
    good_frame = extracts[GOOD_LA]
    good = packager.command(
        GOOD_LA, good_frame.to_csv(index=False, lineterminator="\n").encode(), extract_date=GOOD_DATE
    )

    done = _cme(env, home, "run", "--la", "all", "--year", str(YEAR))
    roots = [home, tmp, keystore_files(settings.keystore_uri)]
    assert roots[-1].is_dir(), "the key store was never written: the scan of it would prove nothing"
    result = Batch(
        settings, env, roots, cases, good, len(good_frame), list(good_frame["nhs_number"]), done,
    )
    result.runs = {la: _run_states(settings, la) for la in LA_CODES}
    return result


def _scan(roots: list[Path], home: Path, needles: list[str]) -> list[str]:
    """Files under the roots (outside the home's partner/) holding a needle in plain."""
    encoded = [n.encode() for n in needles]
    skip = {home / "partner"}
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not any(path.is_relative_to(s) for s in skip):
                data = path.read_bytes()
                if any(n in data for n in encoded):
                    found.append(str(path.relative_to(root.parent)))
    return found


def _failure_lines(batch: Batch) -> list[str]:
    return [line for line in batch.done.stderr.splitlines() if line.startswith("cme run:")]


def test_one_cme_run_refuses_every_bad_delivery_and_exits_3(batch: Batch, good_extract: GoodExtract) -> None:
    done = batch.done
    assert done.returncode == 3, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = _failure_lines(batch)
    # one line per rejected LA, each naming its own LA first; none for the good run
    named = [line.split(":")[1].strip() for line in lines]
    assert sorted(named) == sorted(c.la for c in batch.cases.values()), lines
    assert all("rejected and quarantined" in line for line in lines), lines
    needles = good_extract.needles() + EXTRA_NEEDLES + batch.good_numbers
    assert not [n for n in needles if n in done.stderr or n in done.stdout]
    # The messages are the cases' own: no two alike once the delivery id is taken out.
    reasons = [line.split("rejected and quarantined: ", 1)[-1] for line in lines]
    assert len(set(reasons)) == len(reasons), reasons


@pytest.mark.parametrize("case", list(CATALOGUE), ids=list(CATALOGUE))
def test_each_bad_delivery_is_rejected_and_quarantined_whole(case: str, batch: Batch) -> None:
    bad, delivered, settings = CATALOGUE[case], batch.cases[case], batch.settings
    la = delivered.la
    assert delivered.commands >= 1, "the case was not packaged by `cme partner package`"
    assert delivered.path.parent == settings.inbox(la)

    lines = [line for line in _failure_lines(batch) if line.startswith(f"cme run: {la}:")]
    assert len(lines) == 1, _failure_lines(batch)
    line = lines[0]
    assert f"delivery {delivered.delivery_id} rejected and quarantined: " in line, line
    assert line.count("rejected") == 1 and line.count("quarantined") == 1, line
    for part in bad.expect:
        assert part in line, line

    state = batch.rejected_state(la)
    assert state["delivery_file"] == delivered.path.name
    assert state["check"].startswith(bad.check), state["check"]
    assert la_outcome(settings, la, state["run_id"]).status == "rejected"

    # byte for byte, still encrypted, in quarantine, with its PII-free note; gone from the inbox
    quarantined = settings.quarantine(la) / delivered.path.name
    assert quarantined.read_bytes() == delivered.sealed
    assert sorted(p.name for p in settings.quarantine(la).glob(f"*{DELIVERY_SUFFIX}")) == [quarantined.name]
    note = json.loads(Path(str(quarantined) + REJECTION_SUFFIX).read_text())
    assert note["check"] == state["check"] and note["delivery_file"] == delivered.path.name
    assert not delivered.path.exists() and not waiting_deliveries(settings, la)

    # nothing retained or staged from it
    retained = minimise.list_retained(open_home(settings), la)
    good_id = batch.good.name.removesuffix(DELIVERY_SUFFIX)
    assert set(retained["delivery_id"]) <= ({good_id} if la == GOOD_LA else set())
    assert minimise.list_retained(open_home(settings), la, state["run_id"]).empty
    assert minimise.staged_count(open_home(settings), la, delivered.delivery_id) == 0

    # recorded in the evidence ledger, and the run went no further
    entries = ledger.run_entries(settings, la, state["run_id"])
    rejected = [e for e in entries if e["event"] == "delivery_rejected"]
    assert len(rejected) == 1, [e["event"] for e in entries]
    assert rejected[0]["facts"]["delivery_file"] == delivered.path.name
    assert rejected[0]["facts"]["check"] == state["check"]
    assert not {"delivery_received", "matched", "minimised"} & {e["event"] for e in entries}


def test_the_good_delivery_behind_a_bad_one_completes(batch: Batch) -> None:
    settings = batch.settings
    completed = [s for s in batch.runs[GOOD_LA] if s.get("completed")]
    assert len(completed) == 1 and len(batch.runs[GOOD_LA]) == 2, batch.runs[GOOD_LA]
    state = completed[0]
    assert state["delivery_file"] == batch.good.name
    assert la_outcome(settings, GOOD_LA, state["run_id"]).status == "completed"
    assert state["received"] == batch.good_rows
    assert state["matched"] + state["possible"] + state["unmatched"] == state["received"]
    retained = minimise.list_retained(open_home(settings), GOOD_LA, state["run_id"])
    assert len(retained) == state["retained"] > 0
    assert set(retained["delivery_id"]) == {state["delivery_id"]}
    assert minimise.staged_count(open_home(settings), GOOD_LA, state["delivery_id"]) == 0
    assert not batch.good.exists() and not (settings.quarantine(GOOD_LA) / batch.good.name).exists()
    # the bad delivery was refused first, in an earlier DAG run
    seqs: dict[str, int] = {}
    for entry in ledger.read_entries(settings, GOOD_LA):
        seqs.setdefault(entry["run_id"], entry["seq"])
    assert seqs[batch.rejected_state(GOOD_LA)["run_id"]] < seqs[state["run_id"]]
    summary = [line for line in batch.done.stdout.splitlines() if line.startswith(GOOD_LA)]
    assert [line.split()[-1] for line in summary] == ["rejected", "completed"], batch.done.stdout
    # every other LA had exactly one run, and it refused its delivery
    assert all(len(batch.runs[c.la]) == 1 for c in batch.cases.values() if c.la != GOOD_LA)


def test_no_personal_value_anywhere_in_the_home(batch: Batch, good_extract: GoodExtract) -> None:
    home = batch.settings.home
    needles = good_extract.needles() + EXTRA_NEEDLES + batch.good_numbers
    assert _scan(batch.roots, home, needles) == []
    # The scan sees a plaintext value where one is.
    planted = home / "la" / LA / "planted.txt"
    planted.write_text(good_extract.frame["surname"].iloc[0] + " " + good_extract.frame["nhs_number"].iloc[0])
    try:
        assert _scan(batch.roots, home, needles) == [f"home/la/{LA}/planted.txt"]
    finally:
        planted.unlink()


def test_evidence_verifies(batch: Batch) -> None:
    verified = _cme(batch.env, batch.settings.home, "evidence", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
