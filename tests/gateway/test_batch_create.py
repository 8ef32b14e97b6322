"""BatchCreateTasks over REST: POST /arvados/v1/job_tasks/batch_create through the gateway."""

from __future__ import annotations

from tests.gateway.conftest import Stack


async def test_batch_create_over_rest_creates_all_or_names_the_bad_one(stack: Stack) -> None:
    job = await stack.create_job()
    body = {
        "requests": [
            {"job_task": {"job_uuid": job["uuid"], "sequence": 1, "parameters": {"i": i}}}
            for i in range(3)
        ]
    }
    response = await stack.client.post("/arvados/v1/job_tasks/batch_create", json=body)
    assert response.status_code == 200, response.text
    created = response.json()["job_tasks"]
    assert [t["parameters"]["i"] for t in created] == [0, 1, 2]
    assert all(t["job_uuid"] == job["uuid"] and t["sequence"] == 1 for t in created)

    body["requests"][1]["job_task"]["status"] = "completed"  # the job manager's to set
    refused = await stack.client.post("/arvados/v1/job_tasks/batch_create", json=body)
    assert refused.status_code == 422, refused.text
    assert "requests[1].job_task.status" in refused.text
    listed = await stack.client.get(
        "/arvados/v1/job_tasks", params={"filters": f'[["job_uuid","=","{job["uuid"]}"]]'}
    )
    assert listed.json()["items_available"] == 4  # the seed task and the first three


async def test_the_gateways_own_checks_name_the_request_too(stack: Stack) -> None:
    """A value the gateway refuses before any service sees it (a type, an unknown
    attribute) is named by its whole path, as the services name theirs."""
    job = await stack.create_job()

    async def refused(path: str, task: dict[str, object], prefix: str) -> None:
        good = {"job_task": {"job_uuid": job["uuid"], "sequence": 1}}
        body = {"requests": [good, {"job_task": {"job_uuid": job["uuid"], **task}}]}
        response = await stack.client.post(path, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0].startswith(prefix), response.text

    tasks = "/arvados/v1/job_tasks/batch_create"
    await refused(tasks, {"status": "bogus"}, "requests[1].job_task.status: invalid value")
    await refused(tasks, {"sequence": "x"}, "requests[1].job_task.sequence: invalid integer")
    await refused(tasks, {"zz": 1}, "requests[1].job_task: unknown attribute 'zz'")
    jobs = "/arvados/v1/jobs/batch_create"
    response = await stack.client.post(
        jobs, json={"requests": [{"job": {"script": "x.py", "priority": "x"}}]}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0].startswith("requests[0].job.priority: invalid integer")
    # Inside a job, a constraint is named by its path in the job, as the services name it.
    constraints = {"retry_backoff_base_seconds": "a"}
    response = await stack.client.post(
        "/arvados/v1/jobs", json={"job": {"script": "x.py", "runtime_constraints": constraints}}
    )
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error.startswith("runtime_constraints.retry_backoff_base_seconds:"), error


async def test_batch_create_over_rest_answers_a_select_only(stack: Stack) -> None:
    """`select` in the body: each created task's attributes are the ones named and `kind`
    (as a list's items with a select), not every attribute with the others at defaults."""
    job = await stack.create_job()
    body = {
        "requests": [{"job_task": {"job_uuid": job["uuid"], "sequence": 1}} for _ in range(2)],
        "select": ["uuid", "sequence"],
    }
    response = await stack.client.post("/arvados/v1/job_tasks/batch_create", json=body)
    assert response.status_code == 200, response.text
    created = response.json()["job_tasks"]
    assert [sorted(t) for t in created] == [["kind", "sequence", "uuid"]] * 2
    for t in created:
        shown = await stack.client.get(f"/arvados/v1/job_tasks/{t['uuid']}")
        assert shown.json()["sequence"] == 1 and t["kind"] == "arvados#jobTask"

    body["select"] = ["uuid", "nope"]
    refused = await stack.client.post("/arvados/v1/job_tasks/batch_create", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0].startswith("select: unknown attribute 'nope'")
