"""The auditor's page: Airflow's DAG run history beside the ledgers, mismatches flagged.

The same audit as ``cme audit runs`` (``evidence.audit``), read from Airflow's metadata database
without Airflow's own code, plus the other direction: ledger runs Airflow has no record of.
"""

from __future__ import annotations

from cme_pipeline.config import Settings
from cme_pipeline.crypto import KeyStore
from cme_pipeline.evidence.airflow_history import load_runs
from cme_pipeline.evidence.audit import COLUMNS, audit_runs, read_entries_safely
from cme_pipeline.evidence.ledger import ANALYST_RUN_PREFIXES
from cme_pipeline.evidence.verify import evidence_las, verify
from cme_pipeline.ui.html import cells, esc, href, link, page, status, table

# A finished run whose evidence is anything else wants an auditor's look.
GOOD_EVIDENCE = ("verified", "in progress")


def evidence_without_runs(settings: Settings, known: set[str]) -> list[tuple[str, str]]:
    """(LA, run id) of ledger runs Airflow has no record of (analysts' own actions excepted).

    Args:
        settings: the home.
        known: the run ids in Airflow's history.
    """
    found = []
    for la_code in evidence_las(settings):
        runs = {str(e.get("run_id")) for e in read_entries_safely(settings, la_code) if e.get("run_id") is not None}
        found += [(la_code, rid) for rid in sorted(runs - known) if not rid.startswith(ANALYST_RUN_PREFIXES)]
    return found


def render(settings: Settings, keys: KeyStore, base: str) -> str:
    """``/auditor``: run history, evidence status, the other direction, and every problem.

    Args:
        settings: the home.
        keys: the key store holding each LA's evidence verification key.
        base: the app's root path, for links.
    """
    rows = audit_runs(settings, keys)
    body = ["<p>Every run of the pipeline's DAGs in Airflow's history, with each LA's outcome and the "
            "status of its evidence (what <code>cme audit runs</code> prints), and every run the ledgers "
            "record that Airflow has no record of. Flagged rows need a look.</p>"]
    if rows is None:
        body.append('<p class="muted">No Airflow history yet.</p>')
        return page("Auditor: DAG runs and evidence", "".join(body))
    history = {r.run_id for r in load_runs(settings) or []}
    report = verify(settings, keys)
    without = [r.evidence.startswith("no evidence") for r in rows]
    troubled = [r.evidence not in GOOD_EVIDENCE and not w or r.state == "failed" for r, w in zip(rows, without, strict=True)]
    body.append(f"<p>Whole-home verification: {status(report.ok)} ({esc(report.summary())}).</p>")
    body.append("<h2>DAG runs</h2>")
    body.append(table(list(COLUMNS), [_row(r.as_dict(), base) for r in rows],
                      flagged=[a or b for a, b in zip(troubled, without, strict=True)]))
    body.append(f"<p>Flagged: {sum(without)} finished run(s) without evidence (nothing processed), "
                f"{sum(troubled)} failed or with evidence problems.</p>")
    orphans = evidence_without_runs(settings, history)
    body.append("<h2>Evidence without a DAG run</h2>")
    body.append(table(["LA", "run in the ledger"], [[esc(la), link(href(base, "dpo", la, rid), rid)] for la, rid in orphans],
                      flagged=[True] * len(orphans)))
    body.append("<h2>Problems found by verification</h2>")
    body.append("<ul>" + "".join(f"<li>{esc(p)}</li>" for p in report.problems) + "</ul>" if report.problems
                else '<p class="ok">None.</p>')
    return page("Auditor: DAG runs and evidence", "".join(body))


def _row(record: dict[str, str], base: str) -> list[str]:
    out = cells(*(record[c] for c in COLUMNS))
    outcomes = record["la_outcomes"].split()
    if record["dag_id"] == "cme_matching" and outcomes and outcomes != ["-"]:
        # each LA's outcome links to the DPO's view of that run
        out[COLUMNS.index("la_outcomes")] = " ".join(
            link(href(base, "dpo", o.split(":", 1)[0], record["run_id"]), o) for o in outcomes)
    return out
