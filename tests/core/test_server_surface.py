"""Every server serves grpc.health.v1 under its service's name, and server reflection."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import Cluster


async def health(addr: str, service: str) -> int:
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        answer: int = response.status
        return answer


async def test_health(cluster: Cluster) -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    assert await health(cluster.jobs_addr, "jobtask.v1.JobService") == serving
    assert await health(cluster.tasks_addr, "jobtask.v1.TaskService") == serving


async def test_reflection_lists_the_services(cluster: Cluster) -> None:
    for addr, name in [
        (cluster.jobs_addr, "jobtask.v1.JobService"),
        (cluster.tasks_addr, "jobtask.v1.TaskService"),
    ]:
        async with grpc.aio.insecure_channel(addr) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)

            async def requests():  # type: ignore[no-untyped-def]
                yield reflection_pb2.ServerReflectionRequest(list_services="")

            names = []
            async for response in stub.ServerReflectionInfo(requests()):
                names = [s.name for s in response.list_services_response.service]
            assert name in names and "grpc.health.v1.Health" in names
