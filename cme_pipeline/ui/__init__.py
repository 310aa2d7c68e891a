"""Pages in Airflow's UI for the DPO, the auditor, the analyst and the CME officer (an Airflow
plugin's app).

``plugins/cme_pages.py`` registers ``airflow_app()`` under ``/cme`` and the navigation entries;
``access`` says who may open which page; ``dpo``, ``auditor`` and ``analyst`` draw the pages from
the evidence and count queries, ids, counts and dates only; ``officer`` lists held children by ref
and records the officer's findings.
"""

from __future__ import annotations

from cme_pipeline.ui.access import PAGES, Page, admits
from cme_pipeline.ui.app import URL_PREFIX, airflow_app, create_app, external_views

__all__ = ["PAGES", "URL_PREFIX", "Page", "admits", "airflow_app", "create_app", "external_views"]
