"""Watch streams: a snapshot, then the job's events from the change feed, resumable.

Positions are sequence numbers of the change feed. Every transaction that writes a job's
events holds the job's row lock first, so one job's events commit in sequence order: a
watcher that read up to seq N of a job never finds a later-committed event of that job
below N. That is why resuming from `after_seq` misses nothing and repeats nothing.

A stream whose request set `max_events_per_message` > 1 gets the events of one feed read
packed into few messages (WatchEvent.more): a watcher that lags sends one gRPC message per
pack instead of per event. Packs are built once per (first event, last event, task filter)
and shared by the streams of the job at the same position, like the events themselves.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from jobtask.domain.access import may_read
from jobtask.domain.errors import InvalidArgument, NotFound, OutOfRange
from jobtask.domain.statuses import JOB_TERMINAL, JobStatus
from jobtask.manager.context import Caller
from jobtask.observability.metrics import WATCH_EVENTS, WATCH_MESSAGES
from jobtask.observability.streams import WATCHES
from jobtask.server.changes import ChangeSignal
from jobtask.server.convert import (
    fill_job,
    fill_task,
    job_fields,
    task_fields,
    time_fields,
)
from jobtask.server.feed_reads import SharedFeedReads
from jobtask.server.task_messages import add_tasks
from jobtask.store import feed
from jobtask.store import jobs as job_store
from jobtask.store import tasks as task_store
from jobtask.store.database import Database
from jobtask.store.rows import job_from_json, task_from_json
from jobtask.v1 import watch_pb2

SNAPSHOT_PAGE = 200
FOLLOW_PAGE = 500
HEARTBEAT_SECONDS = 5.0
# Packing (WatchEvent.more): at most this many events per message, and no more bytes than
# this (a single larger event still goes, alone): far under every client's message limit.
MAX_EVENTS_PER_MESSAGE = 256
MAX_PACK_BYTES = 1024 * 1024
_EVENT_KEY = "_watch_event"
_SIZE_KEY = "_watch_size"
_PACKS_KEY = "_watch_packs"

_TYPES = {
    feed.JOB_CHANGED: watch_pb2.WATCH_EVENT_TYPE_JOB_CHANGED,
    feed.TASK_CREATED: watch_pb2.WATCH_EVENT_TYPE_TASK_CREATED,
    feed.TASK_CHANGED: watch_pb2.WATCH_EVENT_TYPE_TASK_CHANGED,
    feed.TASK_PROGRESS: watch_pb2.WATCH_EVENT_TYPE_TASK_PROGRESS,
    feed.TASK_LOG: watch_pb2.WATCH_EVENT_TYPE_TASK_LOG,
    feed.TASK_DELETED: watch_pb2.WATCH_EVENT_TYPE_TASK_DELETED,
}


def event_pb(row: dict[str, Any]) -> watch_pb2.WatchEvent:
    kind = row["type"]
    payload = row["payload"]
    fields: dict[str, Any] = {
        "seq": row["seq"],
        "type": _TYPES[kind],
        "job_uuid": row["job_uuid"],
        "task_uuid": row["task_uuid"] or "",
        "time": time_fields(row["created_at"]),
    }
    # A job or task is built inside the event (by its constructor, then filled in place),
    # not built apart and copied in whole.
    job = task = None
    if kind == feed.JOB_CHANGED:
        job = job_from_json(payload)
        fields["job"] = job_fields(job)
    elif kind in (feed.TASK_CREATED, feed.TASK_CHANGED):
        task = task_from_json(payload)
        fields["task"] = task_fields(task)
    elif kind == feed.TASK_PROGRESS:
        fields["progress"] = payload["progress"]
    elif kind == feed.TASK_LOG:
        fields["log"] = payload["log"]
    msg = watch_pb2.WatchEvent(**fields)
    if job is not None:
        fill_job(msg.job, job)
    if task is not None:
        fill_task(msg.task, task)
    return msg


def shared_event_pb(row: dict[str, Any]) -> watch_pb2.WatchEvent:
    """The row's WatchEvent, built once for all the streams that share the row (see
    jobtask.server.feed_reads); they only serialize it."""
    msg: watch_pb2.WatchEvent | None = row.get(_EVENT_KEY)
    if msg is None:
        msg = row[_EVENT_KEY] = event_pb(row)
    return msg


def per_message_of(request: Any) -> int:
    """A watch request's `max_events_per_message` (WatchJobRequest, WatchTasksRequest):
    1 (one event per message, as before the field existed) when unset or 0."""
    if not request.HasField("max_events_per_message"):
        return 1
    value = int(request.max_events_per_message)
    if value < 0:
        raise InvalidArgument("max_events_per_message", "must not be negative")
    return max(value, 1)


def _event_size(row: dict[str, Any]) -> int:
    size: int | None = row.get(_SIZE_KEY)
    if size is None:
        size = row[_SIZE_KEY] = shared_event_pb(row).ByteSize()
    return size


def packed(
    rows: list[dict[str, Any]], per_message: int, task_uuid: str | None
) -> list[watch_pb2.WatchEvent]:
    """The rows' events, `per_message` at most per message: each message is the first
    event with the others in `more`. With one per message, the shared events themselves."""
    if per_message <= 1:
        return [shared_event_pb(row) for row in rows]
    messages = []
    start = 0
    while start < len(rows):
        end, size = start + 1, _event_size(rows[start])
        while end < len(rows) and end - start < per_message:
            size += _event_size(rows[end])
            if size > MAX_PACK_BYTES:
                break
            end += 1
        messages.append(_pack(rows, start, end, task_uuid))
        start = end
    return messages


def _pack(
    rows: list[dict[str, Any]], start: int, end: int, task_uuid: str | None
) -> watch_pb2.WatchEvent:
    """rows[start:end] as one message, built once for every stream that sends the same."""
    first = rows[start]
    if end - start == 1:
        return shared_event_pb(first)
    packs: dict[tuple[int, str | None], watch_pb2.WatchEvent] = first.setdefault(_PACKS_KEY, {})
    key = (rows[end - 1]["seq"], task_uuid)
    msg = packs.get(key)
    if msg is None:
        msg = watch_pb2.WatchEvent()
        msg.CopyFrom(shared_event_pb(first))
        msg.more.extend(shared_event_pb(row) for row in rows[start + 1 : end])
        packs[key] = msg
    return msg


class Watcher:
    def __init__(
        self,
        db: Database,
        signal: ChangeSignal,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.db = db
        self.signal = signal
        self.heartbeat_seconds = heartbeat_seconds
        # The follow reads of every stream of this process, shared per job.
        self.reads = SharedFeedReads(db)

    async def stream(
        self,
        caller: Caller,
        job_uuid: str,
        *,
        task_uuid: str | None = None,
        after_seq: int | None = None,
        per_message: int = 1,
        opened: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[watch_pb2.WatchEvent]:
        """`opened` is awaited once the request passed every check, before any event: the
        servicers send the response headers then, so the gateway can tell a refused watch
        (an HTTP error status) from an accepted one that has nothing to say yet.
        `per_message` > 1 packs the events ready together (clamped to
        MAX_EVENTS_PER_MESSAGE)."""
        per_message = min(per_message, MAX_EVENTS_PER_MESSAGE)
        if after_seq is None:
            snapshot, last, terminal = await self._snapshot(caller, job_uuid, task_uuid)
            if opened is not None:
                await opened()
            for event in snapshot:
                yield event
            if terminal:
                return
        else:
            last, terminal = await self._check_resume(caller, job_uuid, after_seq)
            if opened is not None:
                await opened()
        async for event in self._follow(job_uuid, task_uuid, last, terminal, per_message):
            yield event

    async def _snapshot(
        self, caller: Caller, job_uuid: str, task_uuid: str | None
    ) -> tuple[list[watch_pb2.WatchEvent], int, bool]:
        """The snapshot pages, the job's feed position they reflect, and whether the job
        is already terminal."""
        # One read transaction: the job, its tasks and its feed position agree.
        async with self.db.snapshot() as conn:
            job = await job_store.job_by_uuid(conn, job_uuid)
            if job is None or not may_read(caller, job.owner_uuid):
                raise NotFound(f"job {job_uuid} not found")
            # The job's own last event: on PostgreSQL a higher global head could hide an
            # event of this job still being committed (its seq is lower). Never below the
            # pruning watermark, though, or a job idle that long could not be resumed.
            head = max(await feed.job_head(conn, job_uuid), await feed.pruned_before(conn))
            tasks = await task_store.tasks_of_job(conn, job.id, task_uuid=task_uuid)
        if task_uuid and not tasks:
            raise NotFound(f"task {task_uuid} not found in job {job_uuid}")
        terminal = job.status in JOB_TERMINAL
        pages = [tasks[i : i + SNAPSHOT_PAGE] for i in range(0, len(tasks), SNAPSHOT_PAGE)] or [[]]
        messages = []
        for i, page in enumerate(pages):
            msg = watch_pb2.WatchEvent(
                seq=head,
                type=watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT,
                job_uuid=job_uuid,
                snapshot_done=i == len(pages) - 1,
                job=job_fields(job) if i == 0 else None,
            )
            if i == 0:
                fill_job(msg.job, job)
            add_tasks(msg.tasks, page)
            messages.append(msg)
        return messages, int(head), terminal

    async def _check_resume(
        self, caller: Caller, job_uuid: str, after_seq: int
    ) -> tuple[int, bool]:
        """The position to follow from, and whether the job is terminal as of the feed's
        head (so a watcher that saw everything of a finished job is let go at once)."""
        async with self.db.snapshot() as conn:
            job = await job_store.job_by_uuid(conn, job_uuid)
            if job is None or not may_read(caller, job.owner_uuid):
                raise NotFound(f"job {job_uuid} not found")
            pruned = await feed.pruned_before(conn)
            head = await feed.head(conn)
        if after_seq < pruned:
            raise OutOfRange(
                f"after_seq {after_seq} is older than the oldest event kept ({pruned + 1}): "
                "read the job again and watch without after_seq"
            )
        if after_seq > head:
            raise OutOfRange(f"after_seq {after_seq} is ahead of the change feed ({head})")
        return after_seq, job.status in JOB_TERMINAL

    async def _follow(
        self, job_uuid: str, task_uuid: str | None, last: int, terminal: bool, per_message: int
    ) -> AsyncIterator[watch_pb2.WatchEvent]:
        """Events after `last`, until the job is terminal and every event up to then was
        sent. `terminal` is the job's state as of `last`; job_changed events update it."""
        position = WATCHES.opened(job_uuid, last)
        try:
            async for event in self._follow_from(
                job_uuid, task_uuid, last, terminal, position, per_message
            ):
                yield event
        finally:
            WATCHES.closed(position)

    async def _follow_from(
        self,
        job_uuid: str,
        task_uuid: str | None,
        last: int,
        terminal: bool,
        position: int,
        per_message: int,
    ) -> AsyncIterator[watch_pb2.WatchEvent]:
        idle_since = time.monotonic()
        while True:
            WATCHES.sent(position, job_uuid, last)
            # Taken before reading: a commit between the read and the wait still wakes us.
            mark = self.signal.mark()
            page = await self.reads.after(job_uuid, last, FOLLOW_PAGE)
            rows, pruned = page.rows, page.pruned
            if not rows and last < pruned:
                # A quiet job: this stream read every event of it as it committed (pruning
                # takes only events older than Settings.feed_keep), so it may move past the
                # watermark, and its heartbeats stay resumable positions.
                last = pruned
            selected = []
            for row in rows:
                last = row["seq"]
                if row["type"] == feed.JOB_CHANGED:
                    terminal = JobStatus(row["payload"]["status"]) in JOB_TERMINAL
                if not task_uuid or row["task_uuid"] == task_uuid:
                    selected.append(row)
            if selected:
                messages = packed(selected, per_message, task_uuid)
                WATCH_EVENTS.inc(len(selected))
                WATCH_MESSAGES.inc(len(messages))
                for message in messages:
                    yield message
                idle_since = time.monotonic()
            if page.more:
                continue
            if terminal:
                return
            # Rows or none, the read saw every event of the job committed before it began:
            # one committed since notified after `mark`, so the wait below returns at once
            # (reading again right after rows found nothing, a read per message).
            if time.monotonic() - idle_since >= self.heartbeat_seconds:
                yield watch_pb2.WatchEvent(
                    seq=last, type=watch_pb2.WATCH_EVENT_TYPE_HEARTBEAT, job_uuid=job_uuid
                )
                idle_since = time.monotonic()
            await self.signal.wait(self.heartbeat_seconds, since=mark)
