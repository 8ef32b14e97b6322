"""The ceilings: bare grpc.aio servers doing the least each jobtask path could do, with the
same messages, so one load generator drives both and the ratio is jobtask's overhead.

    python -m bench.bare JOB_HEX      # prints {"port": p}

- Echo (unary): answers every GetJobRequest with the Job given on the command line (a real
  job read from jobtask in the same run, so the response is the same size as GetJob's).
- Ingest (client streaming over a bidi call, like RunTask): reads RunTaskRequests and, when
  the client closes its side, answers one RunTaskResponse acking the last seq.
- Watch (server streaming fan-out): each call subscribes; Publish("rate:seconds") sends
  progress WatchEvents stamped with the time to every subscriber at `rate` events/s.
- The worker protocol with no store (`jobtask.v1.TaskService` WorkerSession, and ClaimTask
  and RunTask, so bench.noop_worker drives it unchanged): WorkerSession assigns made-up
  tasks for every credit at once, in messages of the parts the real server's claims
  take when nothing else is in progress on a store whose claim runs outside the server's
  thread (jobtask.server.worker_session.claim_part: half the worker's slots; here a
  claim costs nothing, so that is the honest ceiling's policy), and answers each exit
  with the task Completed; ClaimTask
  answers max_tasks made-up assignments at once; RunTask answers a message that reports an
  exit with the task Completed. The drain rate it allows is the ceiling of any store
  behind that protocol and this worker. Its WorkerSession traffic (messages each way,
  reports and assignments they carried) is counted; Stats returns and resets it.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2, struct_pb2
from jobtask.event_loop import run
from jobtask.server.worker_session import claim_part
from jobtask.v1 import job_pb2, job_service_pb2, job_task_pb2, task_service_pb2, watch_pb2

from bench.harness import announce, wait_for_stdin_close

SERVICE = "bench.Bare"
ECHO = f"/{SERVICE}/Echo"
INGEST = f"/{SERVICE}/Ingest"
WATCH = f"/{SERVICE}/Watch"
PUBLISH = f"/{SERVICE}/Publish"
STATS = f"/{SERVICE}/Stats"
# WorkerSession metadata: assignments per message (bench.ceiling); absent: all at once.
BATCH_KEY = "bench-batch"
# The made-up leases' ttl (seconds), the server's default.
LEASE_TTL = 30
ACTIVE = job_task_pb2.TASK_STATUS_ACTIVE
COMPLETED = job_task_pb2.TASK_STATUS_COMPLETED


class Bare:
    def __init__(self, job: job_pb2.Job) -> None:
        self.job = job
        self.subscribers: list[asyncio.Queue[watch_pb2.WatchEvent | None]] = []
        self.task_numbers = itertools.count()
        # WorkerSession traffic since the last Stats call: messages each way, and what
        # they carried (bench.ceiling: how many tasks a message carries).
        self.traffic: Counter[str] = Counter()

    async def echo(self, request: job_service_pb2.GetJobRequest, context: Any) -> job_pb2.Job:
        return self.job

    async def ingest(
        self, requests: AsyncIterator[task_service_pb2.RunTaskRequest], context: Any
    ) -> AsyncIterator[task_service_pb2.RunTaskResponse]:
        last = 0
        async for msg in requests:
            last = msg.seq
        yield task_service_pb2.RunTaskResponse(acked_seq=last)

    async def watch(
        self, request: job_service_pb2.WatchJobRequest, context: Any
    ) -> AsyncIterator[watch_pb2.WatchEvent]:
        queue: asyncio.Queue[watch_pb2.WatchEvent | None] = asyncio.Queue()
        self.subscribers.append(queue)
        try:
            yield watch_pb2.WatchEvent(type=watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT, snapshot_done=True)
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self.subscribers.remove(queue)

    async def publish(self, request: job_service_pb2.GetJobRequest, context: Any) -> job_pb2.Job:
        rate, seconds = (float(x) for x in request.uuid.split(":"))
        interval = 1.0 / rate
        start = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - start) < seconds:
            n += 1
            event = watch_pb2.WatchEvent(
                seq=n,
                type=watch_pb2.WATCH_EVENT_TYPE_TASK_PROGRESS,
                job_uuid=self.job.uuid,
                task_uuid="zzzzz-ot0gb-000000000000000",
                progress=(n % 1000) / 1000,
            )
            event.time.GetCurrentTime()
            for queue in self.subscribers:
                queue.put_nowait(event)
            await asyncio.sleep(max(0.0, n * interval - elapsed))
        for queue in self.subscribers:
            queue.put_nowait(None)
        return job_pb2.Job(uuid=str(n))

    def _assign(self, assignments: Any, count: int) -> None:
        """`count` made-up assignments, built as the real server builds a claim's
        (jobtask.server.assignments): one time for the whole claim, its expiry stamped by
        integer arithmetic (jobtask.server.convert.stamp), the job copied into each."""
        job = self.job
        now = time.time()
        expires, nanos = int(now) + LEASE_TTL, int(now % 1 * 1e9)
        for n in itertools.islice(self.task_numbers, count):
            a = assignments.add(task_token=f"token-{n}", job=job)
            task = a.task
            task.uuid = f"zzzzz-ot0gb-{n:015d}"
            task.job_uuid = job.uuid
            task.status = ACTIVE
            lease = a.lease
            lease.lease_id = f"lease-{n}"
            lease.expires_at.seconds = expires
            lease.expires_at.nanos = nanos
            lease.ttl.seconds = LEASE_TTL

    async def claim_task(
        self, request: task_service_pb2.ClaimTaskRequest, context: Any
    ) -> task_service_pb2.ClaimTaskResponse:
        response = task_service_pb2.ClaimTaskResponse()
        self._assign(response.assignments, max(1, request.max_tasks))
        return response

    async def worker_session(
        self, requests: AsyncIterator[task_service_pb2.WorkerSessionRequest], context: Any
    ) -> AsyncIterator[task_service_pb2.WorkerSessionResponse]:
        """Assignments for every credit at once, in the real server's parts (claim_part)
        or, for a call with metadata `bench-batch: B`, B a message at most (bench.ceiling's
        gRPC floor), the first of them carrying the updates; every exit answered
        Completed at once."""
        batch = int(dict(context.invocation_metadata()).get(BATCH_KEY, 0))
        traffic = self.traffic
        async for msg in requests:
            if not batch and msg.HasField("open"):
                # The real server's parts for a store whose claim overlaps everything:
                # here a claim costs nothing (see claim_part).
                batch = claim_part(msg.open.slots, msg.open.free_slots, split=True)
            traffic["requests"] += 1
            traffic["reports"] += len(msg.reports)
            response = task_service_pb2.WorkerSessionResponse()
            credits = msg.open.free_slots if msg.HasField("open") else msg.credits
            first = min(credits, batch) if batch else credits
            self._assign(response.assignments, first)
            add = response.updates.add
            for report in msg.reports:
                if report.HasField("exit_code"):
                    uuid = report.task_uuid
                    update = add(task_uuid=uuid, acked_seq=report.seq)
                    update.lease.lease_id = report.lease_id
                    task = update.task
                    task.uuid = uuid
                    task.status = COMPLETED
                    task.progress = 1.0
            response.heartbeat_acked = msg.heartbeat
            if response.assignments or response.updates or msg.heartbeat:
                traffic["responses"] += 1
                traffic["assignments"] += len(response.assignments)
                yield response
            for left in range(credits - first, 0, -batch or -1):
                response = task_service_pb2.WorkerSessionResponse()
                self._assign(response.assignments, min(left, batch))
                traffic["responses"] += 1
                traffic["assignments"] += len(response.assignments)
                yield response

    async def stats(self, request: empty_pb2.Empty, context: Any) -> struct_pb2.Struct:
        """The WorkerSession traffic since the last call (then counted afresh)."""
        out = struct_pb2.Struct()
        out.update(dict(self.traffic))
        self.traffic.clear()
        return out

    async def run_task(
        self, requests: AsyncIterator[task_service_pb2.RunTaskRequest], context: Any
    ) -> AsyncIterator[task_service_pb2.RunTaskResponse]:
        uuid = ""
        async for msg in requests:
            uuid = uuid or msg.task_uuid
            if msg.HasField("exit_code"):
                task = job_task_pb2.JobTask(
                    uuid=uuid, status=job_task_pb2.TASK_STATUS_COMPLETED, progress=1.0
                )
                yield task_service_pb2.RunTaskResponse(acked_seq=msg.seq, task=task)


async def main() -> None:
    job = job_pb2.Job.FromString(bytes.fromhex(sys.argv[1]))
    bare = Bare(job)
    tasks = grpc.method_handlers_generic_handler(
        "jobtask.v1.TaskService",
        {
            "ClaimTask": grpc.unary_unary_rpc_method_handler(
                bare.claim_task,
                request_deserializer=task_service_pb2.ClaimTaskRequest.FromString,
                response_serializer=task_service_pb2.ClaimTaskResponse.SerializeToString,
            ),
            "RunTask": grpc.stream_stream_rpc_method_handler(
                bare.run_task,
                request_deserializer=task_service_pb2.RunTaskRequest.FromString,
                response_serializer=task_service_pb2.RunTaskResponse.SerializeToString,
            ),
            "WorkerSession": grpc.stream_stream_rpc_method_handler(
                bare.worker_session,
                request_deserializer=task_service_pb2.WorkerSessionRequest.FromString,
                response_serializer=task_service_pb2.WorkerSessionResponse.SerializeToString,
            ),
        },
    )
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                bare.echo,
                request_deserializer=job_service_pb2.GetJobRequest.FromString,
                response_serializer=job_pb2.Job.SerializeToString,
            ),
            "Ingest": grpc.stream_stream_rpc_method_handler(
                bare.ingest,
                request_deserializer=task_service_pb2.RunTaskRequest.FromString,
                response_serializer=task_service_pb2.RunTaskResponse.SerializeToString,
            ),
            "Watch": grpc.unary_stream_rpc_method_handler(
                bare.watch,
                request_deserializer=job_service_pb2.WatchJobRequest.FromString,
                response_serializer=watch_pb2.WatchEvent.SerializeToString,
            ),
            "Publish": grpc.unary_unary_rpc_method_handler(
                bare.publish,
                request_deserializer=job_service_pb2.GetJobRequest.FromString,
                response_serializer=job_pb2.Job.SerializeToString,
            ),
            "Stats": grpc.unary_unary_rpc_method_handler(
                bare.stats,
                request_deserializer=empty_pb2.Empty.FromString,
                response_serializer=struct_pb2.Struct.SerializeToString,
            ),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler, tasks))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    announce(port=port)
    try:
        await wait_for_stdin_close()
    finally:
        await server.stop(0.5)


def stubs(channel: grpc.aio.Channel) -> dict[str, Any]:
    """Callables for the bare methods, shaped like the jobtask stubs' methods."""
    return {
        "echo": channel.unary_unary(
            ECHO,
            request_serializer=job_service_pb2.GetJobRequest.SerializeToString,
            response_deserializer=job_pb2.Job.FromString,
        ),
        "ingest": channel.stream_stream(
            INGEST,
            request_serializer=task_service_pb2.RunTaskRequest.SerializeToString,
            response_deserializer=task_service_pb2.RunTaskResponse.FromString,
        ),
        "watch": channel.unary_stream(
            WATCH,
            request_serializer=job_service_pb2.WatchJobRequest.SerializeToString,
            response_deserializer=watch_pb2.WatchEvent.FromString,
        ),
        "publish": channel.unary_unary(
            PUBLISH,
            request_serializer=job_service_pb2.GetJobRequest.SerializeToString,
            response_deserializer=job_pb2.Job.FromString,
        ),
        "stats": channel.unary_unary(
            STATS,
            request_serializer=empty_pb2.Empty.SerializeToString,
            response_deserializer=struct_pb2.Struct.FromString,
        ),
    }


if __name__ == "__main__":
    run(main())
