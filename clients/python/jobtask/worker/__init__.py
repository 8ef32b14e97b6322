"""The jobtask worker agent: claims tasks, runs their scripts, streams what they report.
See README.md here for the task environment and the report protocol."""

from __future__ import annotations

from jobtask.worker.agent import Worker
from jobtask.worker.config import WorkerConfig
from jobtask.worker.functions import Functions, TaskContext

__all__ = ["Functions", "TaskContext", "Worker", "WorkerConfig"]
