"""bench.bare, the store-less ceiling: it must hand tasks out as the real server does where
a claim costs nothing, or the ceiling it measures is not the real server's."""

from __future__ import annotations

import asyncio

import grpc
from jobtask.server.worker_session import claim_part
from jobtask.v1 import task_service_pb2, task_service_pb2_grpc

from bench.harness import child
from bench.throughput import BARE_JOB


async def test_bare_hands_a_sessions_slots_out_in_the_real_servers_parts() -> None:
    """Opened with 100 free slots, the session is answered with the parts the real server's
    claims take on a store whose claim overlaps everything (claim_part, split): two
    messages of 50, not one of 100, so the worker's two groups take turns as on
    PostgreSQL; a credit of one part comes back as one message."""
    bare = child("bench.bare", BARE_JOB.SerializeToString().hex())
    async with (
        bare as (_, ready),
        grpc.aio.insecure_channel(f"127.0.0.1:{ready['port']}") as channel,
    ):
        call = task_service_pb2_grpc.TaskServiceStub(channel).WorkerSession()
        info = task_service_pb2.WorkerInfo(worker_id="w", node_name="n", free_slots=100)
        await call.write(task_service_pb2.WorkerSessionRequest(open=info))
        part = claim_part(0, 100, split=True)
        sizes = [len((await asyncio.wait_for(call.read(), 30)).assignments)]
        sizes.append(len((await asyncio.wait_for(call.read(), 30)).assignments))
        assert sizes == [part, 100 - part] == [50, 50]
        await call.write(task_service_pb2.WorkerSessionRequest(credits=part))
        assert len((await asyncio.wait_for(call.read(), 30)).assignments) == part
        await call.done_writing()
