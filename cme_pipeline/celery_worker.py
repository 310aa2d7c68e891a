"""The Celery configuration of our workers: Airflow's own, plus the pipeline's libraries loaded once.

Airflow runs each task in a process forked from the Celery worker. Left alone, every task
imports pandas, Great Expectations and the pipeline afresh: seconds of CPU per task (half a
minute on a loaded machine), times six tasks per LA. Loaded once in the worker's main process,
before its pool forks, they are shared copy-on-write by every task it runs.
``airflow_services.celery_set`` points ``[celery] celery_config_options`` here.
"""

from __future__ import annotations

import importlib
from typing import Any

from celery.signals import worker_init

# What a matching task imports; the DAG files themselves stay light (tests/test_dags.py).
PRELOADED = ("pandas", "great_expectations", "cme_pipeline.home", "cme_pipeline.quality",
             "cme_pipeline.matching", "cme_pipeline.pipeline.steps", "cme_pipeline.la.minimise",
             "cme_pipeline.evidence")


@worker_init.connect
def preload(**_: Any) -> None:
    """Import the pipeline's heavy libraries in a worker before it starts its pool."""
    for module in PRELOADED:
        importlib.import_module(module)


def __getattr__(name: str) -> Any:
    # Airflow reads CELERY_CONFIG by name; Airflow itself is imported only then (never at
    # module level in the library: tests/test_layering.py).
    if name == "CELERY_CONFIG":
        from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

        return DEFAULT_CELERY_CONFIG
    raise AttributeError(name)
