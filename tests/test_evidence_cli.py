"""`cme evidence verify|public-key|report|ropa`."""

from __future__ import annotations

import re

import pytest
from fixtures_evidence import LA, write_run

from cme_pipeline.cli import main
from cme_pipeline.config import Settings
from cme_pipeline.evidence import files
from cme_pipeline.schemas import HEALTH_EXTRACT

RUN = "manual__2026-10-02T09:00:00+00:00"


def test_verify_ok_exits_zero_with_a_summary(two_runs: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(two_runs.home), "evidence", "verify"]) == 0
    out = capsys.readouterr()
    assert "evidence OK (all runs): 1 LAs, 22 ledger entries, 2 signed checkpoints, 2 certificates" in out.out
    assert out.err == ""


def test_verify_problems_go_to_stderr_and_exit_one(two_runs: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = files.ledger_file(two_runs, LA)
    ledger.write_bytes(b"\n".join(ledger.read_bytes().splitlines()[:-1]) + b"\n")
    assert main(["--home", str(two_runs.home), "evidence", "verify", "--run", RUN]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"{LA} ledger truncated: checkpoint 2 says 22 entries, found 21" in err
    assert err[-1].startswith("cme evidence verify: 2 problem(s) found")  # and the report it bound is unbound


def test_public_key_is_pem_and_matches_the_exported_copy(two_runs: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(two_runs.home), "evidence", "public-key", "--la", LA]) == 0
    pem = capsys.readouterr().out
    assert pem.startswith("-----BEGIN PUBLIC KEY-----") and "PRIVATE" not in pem
    assert files.public_key_file(two_runs, LA).read_text() == pem


def test_public_key_of_an_unknown_la_is_a_usage_error(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(settings.home), "evidence", "public-key", "--la", "W99"]) == 2
    assert "unknown LA code" in capsys.readouterr().err


def test_report_command_renders_one_run(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(settings, RUN, report=False)
    assert main(["--home", str(settings.home), "evidence", "report", "--la", LA, "--run", RUN]) == 0
    assert capsys.readouterr().out.strip() == str(files.report_file(settings, LA, RUN))


def test_report_of_an_unknown_run_is_one_line(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(settings.home), "evidence", "report", "--la", LA, "--run", "nope"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_ropa_lists_the_extract_fields_and_the_configured_retention(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(settings.home), "evidence", "ropa"]) == 0
    html = open(capsys.readouterr().out.strip()).read()
    fields = re.findall(r"<tr><td><code>([a-z_0-9]+)</code>", html)
    assert tuple(fields) == HEALTH_EXTRACT
    assert f'data-retention-days="{settings.retention_days}"' in html
    assert f'data-review-days="{settings.review_days}"' in html
    assert "<script" not in html
