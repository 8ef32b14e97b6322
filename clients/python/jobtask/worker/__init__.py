"""The jobtask worker agent: claims tasks, runs their scripts, streams what they report.
See README.md here for the task environment and the report protocol."""

from __future__ import annotations

from jobtask.worker.agent import Worker
from jobtask.worker.config import WorkerConfig

__all__ = ["Worker", "WorkerConfig"]
