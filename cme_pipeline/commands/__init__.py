"""Sub-commands of ``cme``: one module each, each with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib

# Each module sets ``handler`` on the parsers it adds; order here is the order in ``cme --help``.
_MODULES = ("simulate", "partner", "run", "demo", "airflow_ui", "link", "evidence", "audit", "review", "retained", "registers", "keys", "notice", "sar", "transfers")


def register_all(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add every sub-command to the ``cme`` parser."""
    for name in _MODULES:
        importlib.import_module(f"cme_pipeline.commands.{name}").register(sub)
