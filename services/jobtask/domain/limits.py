"""The seeds' five resource limits, decided for one task and one worker.

A task's own runtime_constraints override its job's, key by key. The rules:

- `min_ram_per_node`: the worker's node has at least this much real memory (KiB).
- `min_ram_per_task`: the node's memory, less what the tasks already running there reserved
  by their own `min_ram_per_task`, leaves at least this much. So a node of 16 GiB runs at most
  two tasks that each need 8 GiB, whichever jobs they belong to.
- `max_tasks_per_node`: at most N active tasks of the job on one node (by node name).
- `max_nodes`: the job's active tasks span at most N distinct nodes.
- `min_nodes`: the job's tasks are handed out only while at least N distinct nodes are live
  (a worker there was seen within two lease lifetimes) and capable (they have the memory the
  task needs). A job asking for more nodes than exist waits, as crunch's did.

A worker that reports no memory (ram_kib = 0) is never given a task with a memory limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jobtask.domain.resources import RESOURCE_KEYS


@dataclass(frozen=True)
class Limits:
    min_nodes: int | None = None
    max_nodes: int | None = None
    max_tasks_per_node: int | None = None
    min_ram_per_task: int | None = None
    min_ram_per_node: int | None = None
    # True when the task overrides one of the job-wide counts (its refusal is its own).
    task_overrides_counts: bool = False

    @classmethod
    def of(cls, job: Mapping[str, Any] | None, task: Mapping[str, Any] | None) -> Limits:
        if not job and not task:
            return NO_LIMITS  # most tasks: every claim asks, per candidate
        merged: dict[str, int] = {}
        for source in (job or {}, task or {}):
            for key in RESOURCE_KEYS:
                if source.get(key) is not None:
                    merged[key] = int(source[key])
        overrides = any(
            (task or {}).get(k) is not None
            for k in ("min_nodes", "max_nodes", "max_tasks_per_node")
        )
        return cls(**merged, task_overrides_counts=overrides)

    @property
    def task_ram(self) -> int:
        """Memory this task reserves on its node while it runs."""
        return self.min_ram_per_task or 0

    @property
    def needs_job_counts(self) -> bool:
        return self.max_tasks_per_node is not None or self.max_nodes is not None

    def capable(self, ram_kib: int) -> bool:
        """Could a node with this much memory ever run the task?"""
        return ram_kib >= (self.min_ram_per_node or 0) and ram_kib >= self.task_ram


NO_LIMITS = Limits()


@dataclass(frozen=True)
class Refusal:
    reason: str
    # The reason holds for every task of the job that has no limits of its own.
    job_wide: bool


def refuse_ram(limits: Limits, node_ram: int, ram_in_use: int) -> Refusal | None:
    if limits.min_ram_per_node is not None and node_ram < limits.min_ram_per_node:
        return Refusal(
            f"min_ram_per_node {limits.min_ram_per_node} KiB > node's {node_ram} KiB", False
        )
    if limits.min_ram_per_task is not None and node_ram - ram_in_use < limits.min_ram_per_task:
        return Refusal(
            f"min_ram_per_task {limits.min_ram_per_task} KiB > node's free "
            f"{node_ram - ram_in_use} KiB",
            False,
        )
    return None


def refuse_counts(
    limits: Limits, node_name: str, job_nodes: Mapping[str, int], live_nodes: int
) -> Refusal | None:
    """job_nodes: the job's active tasks per node name; live_nodes: capable live nodes."""
    job_wide = not limits.task_overrides_counts
    if limits.min_nodes is not None and live_nodes < limits.min_nodes:
        return Refusal(f"min_nodes {limits.min_nodes} > {live_nodes} live nodes", job_wide)
    on_node = job_nodes.get(node_name, 0)
    if limits.max_tasks_per_node is not None and on_node >= limits.max_tasks_per_node:
        return Refusal(f"max_tasks_per_node {limits.max_tasks_per_node} reached", job_wide)
    spanned = sum(1 for n in job_nodes.values() if n > 0)
    if limits.max_nodes is not None and on_node == 0 and spanned >= limits.max_nodes:
        return Refusal(f"max_nodes {limits.max_nodes} reached", job_wide)
    return None


def capable_nodes(limits: Limits, workers: Iterable[tuple[str, int]]) -> int:
    """Distinct node names among (node_name, ram_kib) of live workers that could run it."""
    return len({node for node, ram in workers if limits.capable(ram)})
