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
        users = dict(u.split(":")[:2] for u in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
        assert users["dpo"] == users["auditor"] == "viewer" and users["analyst"] == "user"
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
