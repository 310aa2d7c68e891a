"""Architecture rules of DESIGN.md §2, checked on the source so they cannot drift."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cme_pipeline"

# Partner-side code and the commands that drive the simulated partner may use the simulator.
PARTNER_SIDE = {"simulate", "commands/simulate.py", "commands/partner.py", "commands/demo.py"}


def _imports(path: Path) -> set[str]:
    return _imports_of(path.read_text())


def _imports_of(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
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
        if rel in ("config.py", "embedded_airflow.py", "commands/airflow_ui.py", "airflow_services.py"):
            continue  # config reads it; the Airflow launchers only write Airflow's own settings
        assert "os.environ" not in source and "getenv" not in source, rel


# -- layers (docs/architecture.md): a package may import only its own layer and those below ---------

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"__init__", "__version__", "errors", "config", "schemas", "areas", "nhs_number", "school_age",
               "progress", "durable"}),
    frozenset({"crypto", "matching", "linkage"}),
    frozenset({"store", "runs"}),
    frozenset({"quality"}),
    frozenset({"evidence"}),
    frozenset({"home"}),  # the composition root
    frozenset({"la", "simulate"}),
    frozenset({"pipeline"}),
    frozenset({"commands", "embedded_airflow", "embedded_workers", "cli", "ui", "supervisor", "airflow_services", "celery_worker"}),
)
# Only the composition root names a concrete key store or opens an LA store engine.
WIRING = {"FileKeyStore": {"home.py", "crypto/keystore.py"}, "Pkcs11KeyStore": {"home.py", "crypto/pkcs11_store.py"},
          "create_store_engine": {"home.py", "store/db.py"},
          "create_tables": {"home.py", "store/db.py"}, "create_all": {"store/db.py"}}


def _unit(rel: str) -> str:
    return rel.split("/")[0].removesuffix(".py")


def _layer(unit: str) -> int:
    return next(i for i, members in enumerate(LAYERS) if unit in members)


def _edges(rel: str, tree: ast.AST) -> set[str]:
    """Our top-level packages/modules that ``rel`` imports anywhere (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" if node.module == "cme_pipeline" else node.module for a in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("cme_pipeline.")}
    return found - {_unit(rel)}


def layering_violations(sources: dict[str, str]) -> list[str]:
    """Imports that point up a layer, and concrete wiring outside the composition root.

    Args:
        sources: module path relative to the package (``evidence/verify.py``) -> its source.
    """
    problems = []
    for rel, source in sorted(sources.items()):
        tree = ast.parse(source)
        for target in sorted(_edges(rel, tree)):
            if _layer(target) > _layer(_unit(rel)):
                problems.append(f"{rel} imports {target} (a higher layer)")
        named = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
            n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        named |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        for name, allowed in WIRING.items():
            if name in named and rel not in allowed:
                problems.append(f"{rel} names {name} (only the composition root wires services)")
    return problems


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_layer() -> None:
    assert sorted({_unit(rel) for rel in _sources()} - set().union(*LAYERS)) == []


def test_imports_point_down_and_only_the_composition_root_wires() -> None:
    assert layering_violations(_sources()) == []


def test_the_rules_catch_a_wrong_import_and_a_stray_key_store() -> None:
    # Deliberately wrong: evidence reaching up into the composition root, the pipeline and an LA
    # service, and a step building its own key store and engine.
    bad = {
        "evidence/verify.py": "from cme_pipeline.home import open_home\nfrom cme_pipeline.pipeline import steps\n",
        "store/retained.py": "def f():\n    from cme_pipeline.la import minimise\n",
        "pipeline/steps.py": "from cme_pipeline.crypto.keystore import FileKeyStore\n"
                             "from cme_pipeline.store.db import create_store_engine\n",
    }
    assert layering_violations(bad) == [
        "evidence/verify.py imports home (a higher layer)",
        "evidence/verify.py imports pipeline (a higher layer)",
        "pipeline/steps.py names FileKeyStore (only the composition root wires services)",
        "pipeline/steps.py names create_store_engine (only the composition root wires services)",
        "store/retained.py imports la (a higher layer)",
    ]


def test_la_services_touch_tables_only_through_store_functions() -> None:
    for rel, source in _sources().items():
        if rel.startswith("la/"):
            imports = _imports_of(source)
            assert "cme_pipeline.store.tables" not in imports, rel
            assert not {n for n in imports if n == "sqlalchemy" or n.startswith("sqlalchemy.") and n != "sqlalchemy.engine"}, rel

