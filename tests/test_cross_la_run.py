"""`cme run` runs the cross-LA check once the LAs' runs are done (issue 15): two neighbouring LAs
simulated and run through the real Airflow DAG; a child of one on the other's register leaves the
retained list, the ledger names only LA codes and counts, and the evidence verifies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.crypto import open_delivery
from cme_pipeline.evidence import files
from cme_pipeline.home import open_home
from cme_pipeline.la.minimise import read_retained
from cme_pipeline.quality.extract_csv import parse_extract

VALE, CARDIFF = "W06000014", "W06000015"  # neighbours
FACTS = {"checked", "found_on_other_la_register", "removed", "possibly_on_other_la_register"}


def _cme(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cme_pipeline.cli", "--home", str(home), *args],
                          capture_output=True, text=True, env=env, check=False)


def _extract(settings: Settings, la: str) -> pd.DataFrame:
    """The partner's plaintext, read in the test only, to know what must not reach the ledger."""
    path = next(settings.inbox(la).glob("*.cmedelivery"))
    return parse_extract(open_delivery(open_home(settings).keys, path.read_bytes(), la_code=la)[1])


def test_cme_run_removes_a_child_found_on_the_neighbours_register(tmp_path: Path) -> None:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    tmp.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(tmp), "HOME": str(tmp_path)}
    made = _cme(env, home, "simulate", "--la", f"{VALE},{CARDIFF}", "--children", "500", "--seed", "7",
                "--cross-la-rate", "0.08")
    assert made.returncode == 0, made.stderr
    settings = load_settings(home, environ={})
    truth = pd.concat([pd.read_csv(settings.partner_dir / "truth" / f"{la}.csv", dtype=str, keep_default_na=False)
                       for la in (VALE, CARDIFF)], ignore_index=True)
    cross = truth[truth["other_la"] != ""]
    nowhere = truth[(truth["other_la"] == "") & (truth["registers"] == "")]
    assert len(cross) >= 5 and set(cross["la_code"]) == {VALE, CARDIFF}
    people = pd.concat([_extract(settings, la) for la in (VALE, CARDIFF)], ignore_index=True)

    done = _cme(env, home, "run", "--la", f"{VALE},{CARDIFF}")
    assert done.returncode == 0, done.stderr
    assert "cross-LA check" in done.stderr + done.stdout

    home_services = open_home(settings)
    retained = {la: set(read_retained(home_services, la)["nhs_number"]) for la in (VALE, CARDIFF)}
    gone = cross[[n not in retained[la] for n, la in zip(cross["nhs_number"], cross["la_code"], strict=True)]]
    assert len(gone) >= 1  # a child of one LA on the other's register left the retained list
    # no child on no Welsh register was removed by the check (the LA's own run never matches them)
    assert all(n in retained[la] for n, la in zip(nowhere["nhs_number"], nowhere["la_code"], strict=True))
    removed = 0
    for la, other in ((VALE, CARDIFF), (CARDIFF, VALE)):
        text = files.ledger_file(settings, la).read_text()
        entries = [json.loads(line) for line in text.splitlines()]
        entry = next(e for e in entries if e["event"] == "cross_la_check")
        facts = entry["facts"]
        assert set(facts) == FACTS and isinstance(facts["checked"], int) and isinstance(facts["removed"], int)
        for key in ("found_on_other_la_register", "possibly_on_other_la_register"):
            assert set(facts[key]) <= {other} and all(isinstance(n, int) for n in facts[key].values())
        assert sum(facts["found_on_other_la_register"].values()) == facts["removed"]
        removed += facts["removed"]
        # only codes and counts: no NHS number, name or date of birth of any child in the ledger
        assert not any(n in text for n in truth["nhs_number"])
        assert not any(f'"{s}"' in text for s in people["surname"]) and not any(d in text for d in people["dob"])
    assert removed >= len(gone[gone["other_la"] != ""]) >= 1

    verified = _cme(env, home, "evidence", "verify")
    assert verified.returncode == 0, verified.stderr
