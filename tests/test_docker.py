"""The production compose file: services and settings checked by parsing (no container engine here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())
    return data


def test_compose_has_the_airflow_3_services() -> None:
    services = _compose()["services"]
    assert {
        "postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
        "airflow-triggerer", "airflow-worker", "airflow-init",
    } <= set(services)
    assert services["airflow-worker"]["command"] == "celery worker"
    assert services["airflow-apiserver"]["command"] == "api-server"


def test_airflow_settings_are_production_grade() -> None:
    services = _compose()["services"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-worker", "airflow-dag-processor"):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        assert env["CME_DATABASE_URL"].startswith("postgresql://")
        # The Fernet key must come from the environment, and compose must refuse to start without it.
        assert env["AIRFLOW__CORE__FERNET_KEY"].startswith("${AIRFLOW__CORE__FERNET_KEY:?")
        assert "redis://" in env["AIRFLOW__CELERY__BROKER_URL"]
        # A real auth manager (users and roles in the metadata DB), not the dev-only SimpleAuthManager.
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
        assert not [k for k in env if k.startswith("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER")]
        assert env["AIRFLOW__API__SECRET_KEY"].startswith("${AIRFLOW__API__SECRET_KEY:?")
        # Keys on their own volume, never inside the home a backup of the LA's files would copy.
        keys = env["CME_KEYSTORE"].removeprefix("file:")
        assert not keys.startswith(env["CME_HOME"].rstrip("/") + "/")
        assert any(v.endswith(":" + keys) for v in services[name]["volumes"])


def test_image_extends_the_pinned_official_airflow() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2" in dockerfile
    assert "--locked" in dockerfile
    pyproject = (DOCKER.parent / "pyproject.toml").read_text()
    assert '"apache-airflow==3.3.2"' in pyproject


def test_init_creates_the_roles_the_cme_pages_ask_the_auth_manager_about() -> None:
    import importlib.util

    assert "python /opt/cme-pipeline/docker/fab_roles.py" in " ".join(_compose()["services"]["airflow-init"]["command"])
    spec = importlib.util.spec_from_file_location("fab_roles", DOCKER / "fab_roles.py")
    assert spec and spec.loader
    fab_roles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fab_roles)  # Airflow's FAB is imported only by main(), in the image
    assert fab_roles.role_permissions() == {
        "Analyst": [("can_read", "CME Analyst"), ("can_read", "CME Officer")],
        "DPO": [("can_read", "CME DPO")],
        "Auditor": [("can_read", "CME Auditor"), ("can_read", "CME DPO")],
    }


def test_image_installs_fab_pinned_and_hashed_and_finds_the_pages_plugin() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --no-deps --require-hashes -r /opt/cme-pipeline/docker/fab-requirements.txt" in dockerfile
    assert "AIRFLOW__CORE__PLUGINS_FOLDER=/opt/cme-pipeline/plugins" in dockerfile
    lines = [ln for ln in (DOCKER / "fab-requirements.txt").read_text().splitlines() if ln and ln[0].isalnum()]
    assert "apache-airflow-providers-fab==3.10.2 \\" in lines
    assert all("==" in ln and ln.endswith("\\") for ln in lines)  # every package pinned, each followed by its hashes


def test_compose_is_the_arrangement_cme_airflow_celery_starts() -> None:
    # `cme airflow --executor celery` starts the same components where there is no container
    # engine: the same Airflow commands, two workers, the same Celery settings, the key store
    # and the LA home on volumes every Airflow service shares, and a broker that keeps nothing.
    from cme_pipeline.airflow_services import celery_set
    from cme_pipeline.config import Settings

    settings = Settings(home=Path("/h"), database_url="postgresql://c@db/cme", airflow_database_url="postgresql://a@db/airflow")
    specs = celery_set(settings, "airflow", {"AIRFLOW__API__PORT": "8080"}, "redis://broker", workers=2, concurrency=2)
    services = _compose()["services"]
    airflow = {name: s for name, s in services.items() if name.startswith("airflow-") and name != "airflow-init"}
    assert sorted(s["command"] for s in airflow.values()) == sorted(
        {spec.argv[1] if not spec.redundant else " ".join(spec.argv[1:3]) for spec in specs})
    assert services["airflow-worker"]["deploy"]["replicas"] == sum(spec.redundant for spec in specs) == 2
    for name, service in airflow.items():
        env = service["environment"]
        for key in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"):
            assert env[key] == specs[0].env[key], (name, key)
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")
        assert {v.split(":")[0] for v in service["volumes"]} >= {"cme-home", "cme-keys", "airflow-logs"}, name
    assert services["redis"]["command"] == ["redis-server", "--save", "", "--appendonly", "no"]
