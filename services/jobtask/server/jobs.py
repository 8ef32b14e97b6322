"""JobService: parse, resolve the caller, call the job manager, convert."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from jobtask.domain.errors import each_request
from jobtask.domain.resources import JOB_ATTRS
from jobtask.manager.jobs import JobManager
from jobtask.server.callers import CallerResolver, send_caller_headers
from jobtask.server.convert import changes_from, job_pb
from jobtask.server.errors import rpc
from jobtask.server.job_messages import add_jobs
from jobtask.server.listing import keep_selected, list_query
from jobtask.server.watch import Watcher, per_message_of
from jobtask.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, watch_pb2

Context = grpc.aio.ServicerContext[Any, Any]
QUEUE_ORDER = (("priority", True), ("created_at", False))


def _allow_duplicate(request: job_service_pb2.CreateJobRequest) -> bool:
    if request.HasField("allow_duplicate"):
        return request.allow_duplicate
    if request.HasField("find_or_create"):
        return not request.find_or_create
    return False


class JobServicer(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self, jobs: JobManager, callers: CallerResolver, watcher: Watcher) -> None:
        self.jobs = jobs
        self.callers = callers
        self.watcher = watcher

    @rpc
    async def CreateJob(
        self, request: job_service_pb2.CreateJobRequest, context: Context
    ) -> job_pb2.Job:
        caller = await self.callers(context)
        record = await self.jobs.create(
            caller, changes_from(request.job, None), allow_duplicate=_allow_duplicate(request)
        )
        return job_pb(record)

    @rpc
    async def BatchCreateJobs(
        self, request: job_service_pb2.BatchCreateJobsRequest, context: Context
    ) -> job_service_pb2.BatchCreateJobsResponse:
        caller = await self.callers(context)
        requests = each_request(
            "job", request.requests, lambda r: (changes_from(r.job, None), _allow_duplicate(r))
        )
        created = await self.jobs.create_many(caller, requests)
        response = job_service_pb2.BatchCreateJobsResponse()
        add_jobs(response.jobs, created)
        return response

    @rpc
    async def GetJob(self, request: job_service_pb2.GetJobRequest, context: Context) -> job_pb2.Job:
        return job_pb(await self.jobs.get(await self.callers(context), request.uuid))

    async def _list(
        self, request: job_service_pb2.ListJobsRequest, context: Context, *, queued: bool
    ) -> job_service_pb2.ListJobsResponse:
        caller = await self.callers(context)
        query = (
            list_query(request, JOB_ATTRS, QUEUE_ORDER)
            if queued
            else list_query(request, JOB_ATTRS)
        )
        records, total = await self.jobs.list(caller, query, queued_only=queued)
        response = job_service_pb2.ListJobsResponse(
            kind="arvados#jobList",
            offset=query.offset,
            limit=query.limit,
        )
        add_jobs(response.items, records)
        keep_selected(response.items, query.select)
        if total is not None:
            response.items_available = total
        return response

    @rpc
    async def ListJobs(
        self, request: job_service_pb2.ListJobsRequest, context: Context
    ) -> job_service_pb2.ListJobsResponse:
        return await self._list(request, context, queued=False)

    @rpc
    async def QueueJobs(
        self, request: job_service_pb2.ListJobsRequest, context: Context
    ) -> job_service_pb2.ListJobsResponse:
        return await self._list(request, context, queued=True)

    @rpc
    async def QueueSize(
        self, request: job_service_pb2.QueueSizeRequest, context: Context
    ) -> job_service_pb2.QueueSizeResponse:
        await self.callers(context)
        return job_service_pb2.QueueSizeResponse(queue_size=await self.jobs.queue_size())

    @rpc
    async def UpdateJob(
        self, request: job_service_pb2.UpdateJobRequest, context: Context
    ) -> job_pb2.Job:
        caller = await self.callers(context)
        changes = changes_from(request.job, request.update_mask.paths)
        return job_pb(await self.jobs.update(caller, request.uuid, changes))

    @rpc
    async def DeleteJob(
        self, request: job_service_pb2.DeleteJobRequest, context: Context
    ) -> job_pb2.Job:
        return job_pb(await self.jobs.delete(await self.callers(context), request.uuid))

    @rpc
    async def CancelJob(
        self, request: job_service_pb2.CancelJobRequest, context: Context
    ) -> job_pb2.Job:
        return job_pb(await self.jobs.cancel(await self.callers(context), request.uuid))

    @rpc
    async def LockJob(
        self, request: job_service_pb2.LockJobRequest, context: Context
    ) -> job_pb2.Job:
        return job_pb(await self.jobs.lock(await self.callers(context), request.uuid))

    @rpc
    async def RequeueJob(
        self, request: job_service_pb2.RequeueJobRequest, context: Context
    ) -> job_pb2.Job:
        return job_pb(await self.jobs.requeue(await self.callers(context), request.uuid))

    @rpc
    async def PauseJob(
        self, request: job_service_pb2.PauseJobRequest, context: Context
    ) -> job_pb2.Job:
        return job_pb(await self.jobs.pause(await self.callers(context), request.uuid))

    @rpc
    async def ResumeJob(
        self, request: job_service_pb2.ResumeJobRequest, context: Context
    ) -> job_pb2.Job:
        return job_pb(await self.jobs.resume(await self.callers(context), request.uuid))

    @rpc
    async def WatchJob(
        self, request: job_service_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[watch_pb2.WatchEvent]:
        caller = await self.callers(context)
        await self.jobs.get(caller, request.uuid)
        after = request.after_seq if request.HasField("after_seq") else None
        async for event in self.watcher.stream(
            caller,
            request.uuid,
            after_seq=after,
            per_message=per_message_of(request),
            opened=lambda: send_caller_headers(context),
        ):
            yield event
