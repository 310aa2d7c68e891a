"""Architecture rules of DESIGN.md §2, checked on the source so they cannot drift."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cme_pipeline"

# Partner-side code and the commands that drive the simulated partner may use the simulator.
PARTNER_SIDE = {"simulate", "commands/simulate.py", "commands/partner.py", "commands/demo.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules() -> list[tuple[str, set[str]]]:
    return [(str(p.relative_to(PACKAGE)), _imports(p)) for p in sorted(PACKAGE.rglob("*.py"))]


def test_la_side_code_never_imports_the_partner_simulator() -> None:
    offenders = [
        rel
        for rel, names in _modules()
        if not any(rel == side or rel.startswith(side + "/") for side in PARTNER_SIDE)
        and rel != "pipeline/simulation.py"  # the simulator DAG's step, partner-side by purpose
        and any(n.startswith("cme_pipeline.simulate") for n in names)
    ]
    assert offenders == []


def test_library_never_imports_airflow_at_module_level() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only; commands may import inside functions
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert not (module or "").startswith("airflow"), path


def test_matching_never_touches_storage_crypto_or_airflow() -> None:
    for rel, names in _modules():
        if rel.startswith("matching/"):
            bad = {n for n in names if n.startswith(("cme_pipeline.store", "cme_pipeline.crypto", "airflow", "sqlalchemy"))}
            assert not bad, (rel, bad)


def test_only_config_reads_the_environment() -> None:
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        rel = str(path.relative_to(PACKAGE))
        if rel in ("config.py", "embedded_airflow.py", "commands/airflow_ui.py"):
            continue  # config reads it; the Airflow launchers only write Airflow's own settings
        assert "os.environ" not in source and "getenv" not in source, rel
