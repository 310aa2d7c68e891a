"""cme-pipeline: find children who may be missing education, keep nothing else."""

from __future__ import annotations

__version__ = "0.1.0"
