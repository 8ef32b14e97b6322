"""TaskService: parse, resolve the caller, call the task and claim managers, convert."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from jobtask.domain.errors import InvalidArgument, each_request
from jobtask.domain.query import parse_select
from jobtask.domain.resources import TASK_ATTRS
from jobtask.domain.scopes import ALL
from jobtask.domain.uuids import JOB_INFIX, check_uuid
from jobtask.manager.claims import ClaimManager
from jobtask.manager.context import utcnow
from jobtask.manager.history import AttemptHistory, AttemptPage
from jobtask.manager.reports import ReportManager
from jobtask.manager.tasks import TaskManager
from jobtask.manager.tokens import Credentials
from jobtask.manager.workers import WorkerRegistry
from jobtask.server.assignments import BACKOFF_SLACK, assignments_pb, worker_spec
from jobtask.server.callers import CallerResolver, current_credentials, send_caller_headers
from jobtask.server.changes import ChangeSignal
from jobtask.server.convert import changes_from, task_pb, timestamp
from jobtask.server.errors import rpc
from jobtask.server.listing import keep_selected, list_query
from jobtask.server.run_task import RunTasks
from jobtask.server.task_messages import SelectedTasks, add_tasks
from jobtask.server.watch import Watcher, per_message_of
from jobtask.server.worker_session import WorkerSessions
from jobtask.server.workers import WorkerWatch, worker_pb
from jobtask.store.attempts import AttemptRow
from jobtask.v1 import job_task_pb2, task_service_pb2, task_service_pb2_grpc, watch_pb2, worker_pb2

Context = grpc.aio.ServicerContext[Any, Any]
MAX_CLAIM_WAIT = 60.0


def attempt_pb(row: AttemptRow) -> task_service_pb2.TaskAttempt:
    msg = task_service_pb2.TaskAttempt(
        kind="arvados#jobTaskAttempt",
        task_uuid=row.task_uuid,
        job_uuid=row.job_uuid,
        attempt=row.attempt,
        worker_id=row.worker_id,
        node_name=row.node_name,
        outcome=row.outcome or "",
    )
    msg.started_at.CopyFrom(timestamp(row.started_at))
    if row.ended_at is not None:
        msg.ended_at.CopyFrom(timestamp(row.ended_at))
    if row.exit_code is not None:
        msg.exit_code = row.exit_code
    if row.signal is not None:
        msg.signal = row.signal
    return msg


def _page(
    request: task_service_pb2.ListTaskAttemptsRequest | task_service_pb2.ListJobAttemptsRequest,
) -> tuple[int | None, int | None]:
    return (
        request.limit if request.HasField("limit") else None,
        request.offset if request.HasField("offset") else None,
    )


def _listing(page: AttemptPage, offset: int | None) -> dict[str, Any]:
    rows, size, total = page
    return {
        "kind": "arvados#jobTaskAttemptList",
        "offset": offset or 0,
        "limit": size,
        "items": [attempt_pb(r) for r in rows],
        "items_available": total,
    }


class TaskServicer(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(
        self,
        tasks: TaskManager,
        claims: ClaimManager,
        callers: CallerResolver,
        watcher: Watcher,
        signal: ChangeSignal,
        runs: RunTasks | None = None,
    ) -> None:
        self.tasks = tasks
        self.claims = claims
        self.callers = callers
        self.watcher = watcher
        self.signal = signal
        self.runs = runs or RunTasks(
            ReportManager(tasks.db, tasks.settings), signal, tasks.settings
        )
        self.workers = WorkerRegistry(tasks.db, tasks.settings)
        self.history = AttemptHistory(tasks.db)
        self.worker_watch = WorkerWatch(self.workers, signal)
        self.sessions = WorkerSessions(self.runs, claims)

    @rpc
    async def CreateTask(
        self, request: task_service_pb2.CreateTaskRequest, context: Context
    ) -> job_task_pb2.JobTask:
        caller = await self.callers(context)
        return task_pb(await self.tasks.create(caller, changes_from(request.job_task, None)))

    @rpc
    async def BatchCreateTasks(
        self, request: task_service_pb2.BatchCreateTasksRequest, context: Context
    ) -> task_service_pb2.BatchCreateTasksResponse:
        caller = await self.callers(context)
        # (Checked first: a bad select creates nothing.)
        select = parse_select(TASK_ATTRS, request.select)
        raws = each_request("job_task", request.requests, lambda r: changes_from(r.job_task, None))
        created = await self.tasks.create_many(caller, raws)
        response = task_service_pb2.BatchCreateTasksResponse()
        if select:
            SelectedTasks(select).add(response.job_tasks, created)
        else:
            add_tasks(response.job_tasks, created)
        return response

    @rpc
    async def GetTask(
        self, request: task_service_pb2.GetTaskRequest, context: Context
    ) -> job_task_pb2.JobTask:
        return task_pb(await self.tasks.get(await self.callers(context), request.uuid))

    @rpc
    async def ListTasks(
        self, request: task_service_pb2.ListTasksRequest, context: Context
    ) -> task_service_pb2.ListTasksResponse:
        caller = await self.callers(context)
        query = list_query(request, TASK_ATTRS)
        records, total = await self.tasks.list(caller, query)
        response = task_service_pb2.ListTasksResponse(
            kind="arvados#jobTaskList",
            offset=query.offset,
            limit=query.limit,
        )
        add_tasks(response.items, records)
        keep_selected(response.items, query.select)
        if total is not None:
            response.items_available = total
        return response

    @rpc
    async def UpdateTask(
        self, request: task_service_pb2.UpdateTaskRequest, context: Context
    ) -> job_task_pb2.JobTask:
        caller = await self.callers(context)
        changes = changes_from(request.job_task, request.update_mask.paths)
        return task_pb(await self.tasks.update(caller, request.uuid, changes))

    @rpc
    async def DeleteTask(
        self, request: task_service_pb2.DeleteTaskRequest, context: Context
    ) -> job_task_pb2.JobTask:
        return task_pb(await self.tasks.delete(await self.callers(context), request.uuid))

    @rpc
    async def ReportTaskExit(
        self, request: task_service_pb2.ReportTaskExitRequest, context: Context
    ) -> job_task_pb2.JobTask:
        caller = await self.callers(context)
        if not request.lease_id and not is_admin_with_all(current_credentials()):
            # The lease id is known only to the worker that claimed the task: without it,
            # another worker's (admin-owned, narrowly scoped) token could end any task.
            raise InvalidArgument(
                "lease_id",
                "is required: only the task's lease holder, or an admin token with scope "
                "'all', may report its exit",
            )
        record = await self.tasks.report_exit(
            caller,
            request.uuid,
            lease_id=request.lease_id,
            exit_code=request.exit_code if request.HasField("exit_code") else None,
            signal=request.signal if request.HasField("signal") else None,
            log=request.log,
        )
        return task_pb(record)

    @rpc
    async def ClaimTask(
        self, request: task_service_pb2.ClaimTaskRequest, context: Context
    ) -> task_service_pb2.ClaimTaskResponse:
        caller = await self.callers(context)
        wait = request.wait.ToTimedelta().total_seconds() if request.HasField("wait") else 0.0
        if wait < 0:
            raise InvalidArgument("wait", "must not be negative")
        if request.max_tasks < 0:
            raise InvalidArgument("max_tasks", "must not be negative")
        deadline = time.monotonic() + min(wait, MAX_CLAIM_WAIT)
        spec = worker_spec(request.worker)
        if spec.slots > 0 and spec.free_slots == 0:
            # A worker that gives its total slots says 0 free on purpose: it is full.
            return task_service_pb2.ClaimTaskResponse()
        ttl = self.claims.settings.lease_ttl.total_seconds()
        while True:
            # Marked before the claim: a change committed while it runs wakes the wait, if it
            # may have made a task claimable (ChangeSignal.claim_mark).
            mark = self.signal.claim_mark()
            claims = await self.claims.claim(caller, spec, request.max_tasks or 1)
            remaining = deadline - time.monotonic()
            if claims or remaining <= 0:
                answer = task_service_pb2.ClaimTaskResponse()
                assignments_pb(claims, ttl, answer.assignments)
                return answer
            # A retry backoff that ends changes nothing in the store: wake up for it too.
            backoff_end = await self.claims.next_runnable_at()
            if backoff_end is not None:
                until = (backoff_end - utcnow()).total_seconds()
                remaining = min(remaining, max(until, 0.0) + BACKOFF_SLACK)
            # Woken at least once a heartbeat interval too: the claim records that an idle
            # worker is still there (the registry's live state).
            heartbeat = self.claims.settings.heartbeat_interval.total_seconds()
            await self.signal.wait(min(remaining, heartbeat), since=mark)

    @rpc
    async def RunTask(
        self, request_iterator: AsyncIterator[task_service_pb2.RunTaskRequest], context: Context
    ) -> AsyncIterator[task_service_pb2.RunTaskResponse]:
        caller = await self.callers(context)
        async for response in self.runs.stream(caller, request_iterator):
            yield response

    @rpc
    async def WorkerSession(
        self,
        request_iterator: AsyncIterator[task_service_pb2.WorkerSessionRequest],
        context: Context,
    ) -> AsyncIterator[task_service_pb2.WorkerSessionResponse]:
        caller = await self.callers(context)
        async for response in self.sessions.stream(caller, request_iterator):
            yield response

    @rpc
    async def WatchTasks(
        self, request: task_service_pb2.WatchTasksRequest, context: Context
    ) -> AsyncIterator[watch_pb2.WatchEvent]:
        caller = await self.callers(context)
        check_uuid(request.job_uuid, JOB_INFIX, "job_uuid")
        after = request.after_seq if request.HasField("after_seq") else None
        async for event in self.watcher.stream(
            caller,
            request.job_uuid,
            task_uuid=request.task_uuid or None,
            after_seq=after,
            per_message=per_message_of(request),
            opened=lambda: send_caller_headers(context),
        ):
            yield event

    @rpc
    async def ListWorkers(
        self, request: task_service_pb2.ListWorkersRequest, context: Context
    ) -> task_service_pb2.ListWorkersResponse:
        caller = await self.callers(context)
        limit = request.limit if request.HasField("limit") else None
        offset = request.offset if request.HasField("offset") else None
        views, total = await self.workers.page(caller, limit, offset)
        return task_service_pb2.ListWorkersResponse(
            kind="arvados#workerList",
            offset=offset or 0,
            limit=len(views) if limit is None else limit,
            items=[worker_pb(v) for v in views],
            items_available=total,
        )

    @rpc
    async def GetWorker(
        self, request: task_service_pb2.GetWorkerRequest, context: Context
    ) -> worker_pb2.Worker:
        caller = await self.callers(context)
        return worker_pb(await self.workers.get(caller, request.worker_id))

    @rpc
    async def ListTaskAttempts(
        self, request: task_service_pb2.ListTaskAttemptsRequest, context: Context
    ) -> task_service_pb2.ListTaskAttemptsResponse:
        caller = await self.callers(context)
        limit, offset = _page(request)
        page = await self.history.of_task(caller, request.uuid, limit, offset)
        return task_service_pb2.ListTaskAttemptsResponse(**_listing(page, offset))

    @rpc
    async def ListJobAttempts(
        self, request: task_service_pb2.ListJobAttemptsRequest, context: Context
    ) -> task_service_pb2.ListJobAttemptsResponse:
        caller = await self.callers(context)
        limit, offset = _page(request)
        page = await self.history.of_job(caller, request.uuid, limit, offset)
        return task_service_pb2.ListJobAttemptsResponse(**_listing(page, offset))

    @rpc
    async def ReportWorkerStopped(
        self, request: task_service_pb2.ReportWorkerStoppedRequest, context: Context
    ) -> worker_pb2.Worker:
        caller = await self.callers(context)
        return worker_pb(await self.workers.stopped(caller, request.worker_id))

    @rpc
    async def WatchWorkers(
        self, request: task_service_pb2.WatchWorkersRequest, context: Context
    ) -> AsyncIterator[worker_pb2.WorkerEvent]:
        caller = await self.callers(context)
        async for event in self.worker_watch.stream(
            caller, opened=lambda: send_caller_headers(context)
        ):
            yield event


def is_admin_with_all(creds: Credentials) -> bool:
    caller = creds.caller
    return (caller.is_admin or caller.is_system) and ALL in creds.scopes
