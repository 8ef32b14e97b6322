"""`jobtask watch`: a job's progress until it ends.

On a terminal: progress bars, one line for the job and one per running task, redrawn in
place. Otherwise (a pipe, a file, CI): one plain line per event; with --json one JSON object
per event. Exit status 0 when the job completed, 1 when it failed or was canceled.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from typing import Any, TextIO

from jobtask.cli import render
from jobtask.cli.jobs import say_break
from jobtask.sdk.client import AsyncClient
from jobtask.v1 import job_pb2, job_task_pb2, watch_pb2

W = watch_pb2.WatchEventType
TS = job_task_pb2.TaskStatus
REDRAW_SECONDS = 0.1


def add_command(sub: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "watch",
        parents=[common],
        help="follow a job's progress until it ends (exit 0 if it completed)",
    )
    p.add_argument("uuid", help="the job's uuid")
    p.add_argument("--logs", action="store_true", help="also print the tasks' log text")
    p.add_argument("--after-seq", type=int, help="resume after this event sequence number")
    p.add_argument("--plain", action="store_true", help="plain event lines even on a terminal")
    p.set_defaults(run=watch)


class Board:
    """What we know of the job and its tasks, built from the events."""

    def __init__(self) -> None:
        self.job: job_pb2.Job | None = None
        self.tasks: dict[str, job_task_pb2.JobTask] = {}

    def apply(self, event: watch_pb2.WatchEvent) -> None:
        if event.HasField("job"):
            if event.type == W.WATCH_EVENT_TYPE_SNAPSHOT:
                self.tasks.clear()  # the first page of a (re)started snapshot
            self.job = event.job
        for task in event.tasks:
            self.tasks[task.uuid] = task
        if event.HasField("task"):
            self.tasks[event.task.uuid] = event.task
        if event.type == W.WATCH_EVENT_TYPE_TASK_PROGRESS and event.task_uuid in self.tasks:
            self.tasks[event.task_uuid].progress = event.progress
        if event.type == W.WATCH_EVENT_TYPE_TASK_DELETED:
            self.tasks.pop(event.task_uuid, None)

    def fraction(self) -> float:
        if not self.tasks:
            return 1.0 if self.job and self.job.status == job_pb2.JOB_STATUS_COMPLETED else 0.0
        done = sum(
            1.0 if t.status == TS.TASK_STATUS_COMPLETED else t.progress
            for t in self.tasks.values()
            if t.status in (TS.TASK_STATUS_COMPLETED, TS.TASK_STATUS_ACTIVE)
        )
        return done / len(self.tasks)

    def counts(self) -> str:
        """The tasks by status, counted from the events: the job's own tasks_summary only
        arrives with a job event, and tasks finish and start between those."""
        if self.job is not None and not self.tasks:
            return render.summary(self.job)
        by_status = Counter(t.status for t in self.tasks.values())
        todo = by_status[TS.TASK_STATUS_QUEUED] + by_status[TS.TASK_STATUS_SOFT_FAILED]
        running = by_status[TS.TASK_STATUS_ACTIVE]
        done = by_status[TS.TASK_STATUS_COMPLETED]
        failed = by_status[TS.TASK_STATUS_FAILED]
        return f"todo {todo}, running {running}, done {done}, failed {failed}"

    def lines(self, columns: int = 80) -> list[str]:
        """The job's line, then one per running task. What matters comes first (status,
        percentage, counts) and the bar last, so a narrow terminal cuts only the bar."""
        if self.job is None:
            return []
        job = self.job
        lines = [
            _with_bar(
                # Not the uuid: it is what was asked to watch, and 27 columns of 80.
                f"job {render.job_status(job.status)} "
                f"{render.percent(self.fraction()).strip()}  {self.counts()}",
                self.fraction(),
                columns,
            )
        ]
        for task in self.tasks.values():
            if task.status == TS.TASK_STATUS_ACTIVE:
                where = f" on {task.node_name}" if task.HasField("node_name") else ""
                lines.append(
                    _with_bar(
                        f"  task {task.uuid} seq {task.sequence} "
                        f"{render.percent(task.progress)}{where}",
                        task.progress,
                        columns,
                    )
                )
        return lines


def _with_bar(text: str, fraction: float, columns: int) -> str:
    room = columns - 1 - len(text) - 2
    return f"{text}  {render.bar(fraction, min(room - 2, 24))}" if room >= 12 else text


def plain_line(event: watch_pb2.WatchEvent, board: Board) -> str | None:
    kind = event.type
    if kind == W.WATCH_EVENT_TYPE_SNAPSHOT:
        if not event.HasField("job"):
            return None
        job = event.job
        return (
            f"{event.seq} snapshot job {job.uuid} {render.job_status(job.status)} "
            f"({render.summary(job)})"
        )
    if kind == W.WATCH_EVENT_TYPE_JOB_CHANGED:
        job = event.job
        return f"{event.seq} job {job.uuid} {render.job_status(job.status)} ({render.summary(job)})"
    if kind == W.WATCH_EVENT_TYPE_TASK_CREATED:
        return f"{event.seq} task {event.task.uuid} created (sequence {event.task.sequence})"
    if kind == W.WATCH_EVENT_TYPE_TASK_CHANGED:
        task = event.task
        # A worker reports the outcome (success) before the task's exit makes it final:
        # without it, that change's line read the same as the progress line before it.
        outcome = ""
        if task.HasField("success"):
            outcome = ", success reported" if task.success else ", failure reported"
        return (
            f"{event.seq} task {task.uuid} {render.task_status(task.status)} "
            f"progress {task.progress * 100:.1f}%{outcome}"
        )
    if kind == W.WATCH_EVENT_TYPE_TASK_PROGRESS:
        return f"{event.seq} task {event.task_uuid} progress {event.progress * 100:.1f}%"
    if kind == W.WATCH_EVENT_TYPE_TASK_DELETED:
        return f"{event.seq} task {event.task_uuid} deleted"
    return None


class Screen:
    """Redraws the board in place with ANSI escapes, at most every REDRAW_SECONDS."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.drawn = 0
        self.last = 0.0

    def draw(self, board: Board, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < REDRAW_SECONDS:
            return
        self.last = now
        # Lines must not wrap and must fit the screen, or moving up by len(lines) would
        # land in the wrong place on the next redraw.
        columns, rows = shutil.get_terminal_size()
        lines = board.lines(columns)
        if len(lines) > rows - 1:
            more = len(lines) - (rows - 2)
            lines = [*lines[: rows - 2], f"  ... and {more} more"]
        lines = [line[: max(columns - 1, 10)] for line in lines]
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")  # up to our first line, clear below
        self.out.write("".join(line + "\n" for line in lines))
        self.out.flush()
        self.drawn = len(lines)

    def above(self, text: str) -> None:
        """Prints text (logs) above the board, which is drawn again below it."""
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0
        self.out.write(text if text.endswith("\n") else text + "\n")


async def watch(args: argparse.Namespace, client: AsyncClient) -> int:
    out = sys.stdout
    live = out.isatty() and not args.json and not args.plain
    board = Board()
    screen = Screen(out)
    following = client.watch(args.uuid, after_seq=args.after_seq, on_break=say_break(client))
    async for event in following:
        board.apply(event)
        if args.json:
            out.write(json.dumps(render.as_json(event)) + "\n")
            out.flush()
            continue
        is_log = event.type == W.WATCH_EVENT_TYPE_TASK_LOG
        if live:
            if is_log and args.logs:
                screen.above(event.log)
            screen.draw(board, force=event.type != W.WATCH_EVENT_TYPE_TASK_PROGRESS)
            continue
        if is_log:
            if args.logs:
                for text in event.log.splitlines():
                    out.write(f"{event.seq} task {event.task_uuid} | {text}\n")
        elif (line := plain_line(event, board)) is not None:
            out.write(line + "\n")
        out.flush()
    job = await client.get(args.uuid)
    if live:
        board.job = job
        screen.draw(board, force=True)
    elif not args.json:
        out.write(f"job {job.uuid} {render.job_status(job.status)}\n")
    return 0 if job.status == job_pb2.JOB_STATUS_COMPLETED else 1
