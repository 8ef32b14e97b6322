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
