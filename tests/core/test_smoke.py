from __future__ import annotations

from jobtask.v1 import job_service_pb2

from tests.conftest import Cluster
from tests.core.helpers import create_job, job_status


async def test_create_and_get(cluster: Cluster) -> None:
    created = await cluster.jobs.CreateJob(create_job(script="hash.py"))
    got = await cluster.jobs.GetJob(job_service_pb2.GetJobRequest(uuid=created.uuid))
    assert got.uuid == created.uuid
    assert got.status == job_status("queued")
