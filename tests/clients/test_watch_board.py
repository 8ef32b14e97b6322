"""`jobtask watch` on a terminal: the header follows the task events, and fits 80 columns."""

from __future__ import annotations

from typing import Any

from jobtask.cli.watching import Board
from jobtask.v1 import job_pb2, job_task_pb2, watch_pb2

W = watch_pb2.WatchEventType
TS = job_task_pb2.TaskStatus
JOB = "zzzzz-8i9sb-000000000000001"


def task(n: int, status: Any, progress: float = 0.0) -> job_task_pb2.JobTask:
    return job_task_pb2.JobTask(
        uuid=f"zzzzz-ot0gb-00000000000000{n}", sequence=1, status=status, progress=progress
    )


def snapshot() -> watch_pb2.WatchEvent:
    job = job_pb2.Job(uuid=JOB, status=job_pb2.JOB_STATUS_ACTIVE)
    job.tasks_summary.todo = 2
    job.tasks_summary.running = 2
    job.tasks_summary.done = 1
    return watch_pb2.WatchEvent(
        seq=1,
        type=W.WATCH_EVENT_TYPE_SNAPSHOT,
        job=job,
        tasks=[
            task(0, TS.TASK_STATUS_COMPLETED, 1.0),
            task(1, TS.TASK_STATUS_ACTIVE, 0.5),
            task(2, TS.TASK_STATUS_ACTIVE, 0.5),
            task(3, TS.TASK_STATUS_QUEUED),
            task(4, TS.TASK_STATUS_QUEUED),
        ],
    )


def changed(seq: int, t: job_task_pb2.JobTask) -> watch_pb2.WatchEvent:
    return watch_pb2.WatchEvent(seq=seq, type=W.WATCH_EVENT_TYPE_TASK_CHANGED, task=t)


def test_the_counts_follow_task_events_between_job_events() -> None:
    board = Board()
    board.apply(snapshot())
    assert "todo 2, running 2, done 1, failed 0" in board.lines()[0]
    board.apply(changed(2, task(1, TS.TASK_STATUS_COMPLETED, 1.0)))
    board.apply(changed(3, task(3, TS.TASK_STATUS_ACTIVE, 0.1)))
    # No job event came: the job's tasks_summary still says todo 2, running 2, done 1.
    assert "todo 1, running 2, done 2, failed 0" in board.lines()[0]


def test_lines_keep_status_percentage_and_counts_within_80_columns() -> None:
    board = Board()
    board.apply(snapshot())
    header, *tasks = board.lines(80)
    assert len(header) < 80
    assert header.startswith("job active 40.0%  todo 2, running 2, done 1, failed 0")
    assert all(len(line) < 80 for line in tasks)
    assert all("50.0%" in line for line in tasks)
    assert header.endswith("]")  # the bar, in the room that is left
    narrow = board.lines(60)[0]
    assert narrow == "job active 40.0%  todo 2, running 2, done 1, failed 0"  # no room: no bar
