"""The worker protocol's pure rules: limits, coalescing, verdicts, the pausing exit."""

from __future__ import annotations

import pytest
from jobtask.domain.errors import InvalidArgument
from jobtask.domain.limits import Limits, capable_nodes, refuse_counts, refuse_ram
from jobtask.domain.reports import Batch, Instruction, Report, log_tail, verdict
from jobtask.domain.rules import decide_exit, handed_back_status
from jobtask.domain.statuses import JobStatus, TaskStatus


def test_a_tasks_limits_override_its_jobs_key_by_key() -> None:
    limits = Limits.of({"min_ram_per_task": 100, "max_nodes": 2}, {"min_ram_per_task": 50})
    assert limits.min_ram_per_task == 50 and limits.max_nodes == 2
    assert not limits.task_overrides_counts
    assert Limits.of({}, {"max_tasks_per_node": 1}).task_overrides_counts


def test_count_limits() -> None:
    nodes = {"a": 2, "b": 1}
    assert refuse_counts(Limits(max_tasks_per_node=2), "a", nodes, 2) is not None
    assert refuse_counts(Limits(max_tasks_per_node=2), "b", nodes, 2) is None
    assert refuse_counts(Limits(max_nodes=2), "c", nodes, 3) is not None
    assert refuse_counts(Limits(max_nodes=2), "a", nodes, 3) is None
    refused = refuse_counts(Limits(min_nodes=3), "a", {}, 2)
    assert refused is not None and refused.job_wide


def test_memory_limits() -> None:
    assert refuse_ram(Limits(min_ram_per_node=1000), 999, 0) is not None
    assert refuse_ram(Limits(min_ram_per_task=1000), 2500, 1000) is None
    assert refuse_ram(Limits(min_ram_per_task=1000), 2500, 2000) is not None
    assert capable_nodes(Limits(min_ram_per_node=10), [("a", 5), ("b", 10), ("b", 20)]) == 1


def test_a_batch_keeps_the_latest_values_and_every_log_chunk() -> None:
    batch = Batch()
    for report in (
        Report(seq=1, progress=0.1, log="a"),
        Report(seq=3, output="x", log="b"),
        Report(seq=2, progress=0.2),
    ):
        batch.add(report)
    assert batch.changes == {"progress": 0.2, "output": "x"}
    assert batch.log == "ab" and batch.seq == 3 and batch.urgent and batch.exit is None
    assert not Batch().urgent and Batch(progress=0.5, count=1)


@pytest.mark.parametrize("progress", [-0.1, 1.01, float("nan")])
def test_progress_must_be_between_zero_and_one(progress: float) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Report(progress=progress)
    assert caught.value.field == "progress"


def test_log_tail_cuts_on_character_boundaries() -> None:
    assert log_tail("ab", "c", limit=2) == "bc"
    assert log_tail("", "é" * 3, limit=5) == "éé"  # 6 bytes: the first, cut, is dropped


def test_verdicts() -> None:
    active, queued = TaskStatus.ACTIVE, JobStatus.QUEUED
    assert verdict(active, queued, True).instruction is Instruction.CONTINUE
    assert verdict(active, queued, False).instruction is Instruction.STOP
    assert verdict(TaskStatus.CANCELED, queued, True).instruction is Instruction.CANCEL
    assert verdict(active, JobStatus.PAUSE_REQUESTED, True).instruction is Instruction.CANCEL


def test_an_undecided_exit_while_the_job_pauses_waits_paused() -> None:
    assert decide_exit(0.5, None, 0, job_holding=True).status is TaskStatus.PAUSED
    assert decide_exit(1.0, True, 0, job_holding=True).status is TaskStatus.COMPLETED
    assert decide_exit(0.5, False, 0, job_holding=True).status is TaskStatus.FAILED
    assert handed_back_status(True) is TaskStatus.PAUSED
    assert handed_back_status(False) is TaskStatus.QUEUED
