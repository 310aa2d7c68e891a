"""Airflow plugin: the CME pages (DPO, auditor, analyst, CME officer) under /cme in Airflow's API server.

A shim: the pages, their authorisation and their navigation entries live in ``cme_pipeline.ui``.
``cme airflow`` and the embedded Airflow find this folder through ``AIRFLOW__CORE__PLUGINS_FOLDER``
(``embedded_airflow.airflow_environment``); the Docker image sets it too.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cme_pipeline.ui import URL_PREFIX, airflow_app, external_views


class CmePagesPlugin(AirflowPlugin):
    """The DPO's, auditor's, analyst's and CME officer's pages."""

    name = "cme_pages"
    fastapi_apps = [{"app": airflow_app(), "url_prefix": URL_PREFIX, "name": "CME pages"}]
    external_views = external_views()
