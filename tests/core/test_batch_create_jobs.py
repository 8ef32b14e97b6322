"""BatchCreateJobs: many jobs in one call and one transaction, all or none, each request
meaning what CreateJob means, applied in request order."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest
from jobtask.manager.tokens import issue_token
from jobtask.observability import metrics
from jobtask.v1 import job_service_pb2, watch_pb2

from tests.conftest import Cluster, start_cluster
from tests.core.helpers import claim, create_job, job, job_tasks, token_md
from tests.engines import counting
from tests.worker_protocol.helpers import watch_events

JSP = job_service_pb2


def _request(**fields: Any) -> JSP.CreateJobRequest:
    find_or_create = fields.pop("find_or_create", None)
    request = create_job(**fields)
    if find_or_create is not None:
        request.find_or_create = find_or_create
    return request


def _batch(*requests: JSP.CreateJobRequest) -> JSP.BatchCreateJobsRequest:
    return JSP.BatchCreateJobsRequest(requests=list(requests))


async def _all_jobs(cluster: Cluster) -> list[str]:
    listed = await cluster.jobs.ListJobs(JSP.ListJobsRequest(limit=1000))
    return [j.uuid for j in listed.items]


async def test_jobs_answer_in_request_order_each_seeded_and_announced(cluster: Cluster) -> None:
    scripts = [f"s{i}.py" for i in range(4)]
    created = await cluster.jobs.BatchCreateJobs(
        _batch(*(_request(script=s, script_parameters={"n": i}) for i, s in enumerate(scripts)))
    )
    assert [j.script for j in created.jobs] == scripts
    assert [j.script_parameters["n"] for j in created.jobs] == [0, 1, 2, 3]
    assert len({j.uuid for j in created.jobs}) == 4
    for submitted in created.jobs:
        assert submitted.tasks_summary.todo == 1
        (seed,) = await job_tasks(cluster, submitted.uuid)
        assert seed.sequence == 0
        # Its job_changed event, then its seed's task_created: as CreateJob writes them.
        events = await watch_events(cluster, submitted.uuid, after_seq=0, limit=2)
        assert [e.type for e in events] == [
            watch_pb2.WATCH_EVENT_TYPE_JOB_CHANGED,
            watch_pb2.WATCH_EVENT_TYPE_TASK_CREATED,
        ]
        assert events[1].task_uuid == seed.uuid


async def test_one_bad_request_submits_nothing_and_is_named(cluster: Cluster) -> None:
    good = _request(script="a.py")
    bad = JSP.CreateJobRequest(job=job(script="b.py", output="made up"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.jobs.BatchCreateJobs(_batch(good, good, bad))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests[2].job.output" in (refused.value.details() or "")

    no_script = _request(script="c.py")
    no_script.job.script = ""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.jobs.BatchCreateJobs(_batch(good, no_script))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests[1].job.script" in (refused.value.details() or "")

    # A submit_id reused for different content later in the batch: nothing of it stays.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.jobs.BatchCreateJobs(
            _batch(_request(script="d.py", submit_id="k1"), _request(script="e.py", submit_id="k1"))
        )
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "requests[1].job.submit_id" in (refused.value.details() or "")

    too_many = _batch(*(_request(script="f.py", allow_duplicate=True) for _ in range(1001)))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.jobs.BatchCreateJobs(too_many)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith("requests:")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.jobs.BatchCreateJobs(_batch())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await _all_jobs(cluster) == []


async def test_requests_of_one_batch_behave_as_if_submitted_one_after_the_other(
    cluster: Cluster,
) -> None:
    earlier = await cluster.jobs.CreateJob(create_job(script="old.py"))
    answered = await cluster.jobs.BatchCreateJobs(
        _batch(
            _request(script="old.py"),  # 0: the committed identical job
            _request(script="new.py"),  # 1: a new job
            _request(script="new.py", find_or_create=True),  # 2: request 1's job
            _request(script="new.py", find_or_create=False),  # 3: a second new job
            _request(script="new.py"),  # 4: the newest of them, request 3's
            _request(script="id.py", submit_id="k", allow_duplicate=True),  # 5: new
            _request(script="id.py", submit_id="k", allow_duplicate=True),  # 6: request 5's
        )
    )
    uuids = [j.uuid for j in answered.jobs]
    assert uuids[0] == earlier.uuid
    assert uuids[2] == uuids[1] and uuids[4] == uuids[3] != uuids[1]
    assert uuids[6] == uuids[5]
    assert len(set(await _all_jobs(cluster))) == 4  # old, two new.py, id.py
    # The same submissions again, one call later: every answer is an existing job.
    again = await cluster.jobs.BatchCreateJobs(
        _batch(_request(script="new.py"), _request(script="id.py", submit_id="k"))
    )
    assert [j.uuid for j in again.jobs] == [uuids[3], uuids[5]]
    assert len(await _all_jobs(cluster)) == 4


async def test_a_task_token_may_not_submit_jobs(cluster: Cluster) -> None:
    await cluster.jobs.CreateJob(create_job(script="a.py"))
    seed = await claim(cluster)
    assert seed is not None
    for call in (
        cluster.jobs.CreateJob(create_job(script="b.py"), metadata=token_md(seed.task_token)),
        cluster.jobs.BatchCreateJobs(
            _batch(_request(script="b.py")), metadata=token_md(seed.task_token)
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert len(await _all_jobs(cluster)) == 1


async def test_scopes_name_the_batch_path(cluster: Cluster) -> None:
    core = cluster.services.core
    user = f"{core.settings.cluster_id}-tpzed-00000000000000b"
    tokens = {}
    for scope in ("POST /arvados/v1/jobs", "POST /arvados/v1/jobs/batch_create"):
        _, tokens[scope] = await issue_token(core.db, core.settings, user_uuid=user, scopes=[scope])
    single = token_md(tokens["POST /arvados/v1/jobs"])
    batch = token_md(tokens["POST /arvados/v1/jobs/batch_create"])
    assert (await cluster.jobs.CreateJob(create_job(script="a.py"), metadata=single)).uuid
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.jobs.BatchCreateJobs(_batch(_request(script="b.py")), metadata=single)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    created = await cluster.jobs.BatchCreateJobs(_batch(_request(script="b.py")), metadata=batch)
    assert [j.owner_uuid for j in created.jobs] == [user]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.jobs.CreateJob(create_job(script="c.py"), metadata=batch)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_replicas_racing_on_submit_ids_answer_with_one_job_each(database_url: str) -> None:
    """Two replicas on one database get the same batch at once: the loser of a submit_id
    race answers with the winner's job, as CreateJob does."""
    replicas = [await start_cluster(database_url), await start_cluster(database_url)]
    try:
        batch = _batch(
            *(
                _request(script="race.py", submit_id=f"r{i}", script_parameters={"i": i})
                for i in range(20)
            )
        )
        answers = await asyncio.gather(
            *(replica.jobs.BatchCreateJobs(batch) for replica in replicas for _ in range(3))
        )
        first = [j.uuid for j in answers[0].jobs]
        assert len(set(first)) == 20
        assert all([j.uuid for j in answer.jobs] == first for answer in answers)
        assert sorted(await _all_jobs(replicas[0])) == sorted(first)
    finally:
        for replica in replicas:
            await replica.close()


async def _submit_counted(cluster: Cluster, n: int) -> list[str]:
    core = cluster.services.core
    requests = [
        ({"script": f"c{n}.py", "submit_id": f"c{n}-{i}", "script_parameters": {"i": i}}, False)
        for i in range(n)
    ]
    with counting(core.db) as statements:
        created = await core.jobs.create_many(core.settings.system_caller(), requests)
    assert len({j.uuid for j in created}) == n
    return statements


async def test_a_batch_costs_the_same_statements_whatever_its_size(cluster: Cluster) -> None:
    small = await _submit_counted(cluster, 3)
    big = await _submit_counted(cluster, 40)
    assert len(big) == len(small), "\n".join(map(str, (small, big)))


async def test_the_jobs_answered_are_the_jobs_stored(cluster: Cluster) -> None:
    """New jobs are answered without reading them back (the INSERT returns their ids; the
    rest is what was written and the schema's defaults): GetJob finds the same jobs, field
    for field, and so does a watcher of each job's first event."""
    limited = _request(script="c.py", runtime_constraints={"min_nodes": 2})
    created = await cluster.jobs.BatchCreateJobs(
        _batch(
            _request(script="a.py"),
            _request(script="b.py", script_parameters={"n": 1}),
            limited,
            limited,  # answered with the job of the request before it
        )
    )
    assert created.jobs[3].uuid == created.jobs[2].uuid
    for answered in created.jobs:
        assert answered == await cluster.jobs.GetJob(JSP.GetJobRequest(uuid=answered.uuid))
        first = (await watch_events(cluster, answered.uuid, after_seq=0, limit=1))[0]
        assert first.job.running == answered.running
        assert first.job.priority == answered.priority


async def test_a_batch_appends_its_events_in_one_statement_each_job_before_its_seed(
    cluster: Cluster,
) -> None:
    core = cluster.services.core
    requests = [({"script": "ev.py", "script_parameters": {"i": i}}, True) for i in range(4)]
    with counting(core.db, width=100_000) as statements:
        created = await core.jobs.create_many(core.settings.system_caller(), requests)
    appends = [s for s in statements if "INSERT INTO events" in s]
    assert len(appends) == 1, appends
    for job_row in created:
        first, second = await watch_events(cluster, job_row.uuid, after_seq=0, limit=2)
        assert first.type == watch_pb2.WATCH_EVENT_TYPE_JOB_CHANGED
        assert first.job.uuid == job_row.uuid
        assert second.type == watch_pb2.WATCH_EVENT_TYPE_TASK_CREATED
        assert second.task.job_uuid == job_row.uuid
        assert first.seq < second.seq


async def test_each_new_job_is_counted_and_logged_once_and_a_duplicate_not(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    before = metrics.JOBS_SUBMITTED._value.get()
    with caplog.at_level(logging.INFO, logger="jobtask.events"):
        created = await cluster.jobs.BatchCreateJobs(
            _batch(_request(script="a.py"), _request(script="b.py"), _request(script="a.py"))
        )
    assert created.jobs[2].uuid == created.jobs[0].uuid  # a duplicate of the batch's first
    assert metrics.JOBS_SUBMITTED._value.get() - before == 2
    logged = [
        r.__dict__["fields"]["job_uuid"]
        for r in caplog.records
        if r.getMessage() == "job_submitted"
    ]
    assert logged == [created.jobs[0].uuid, created.jobs[1].uuid]
