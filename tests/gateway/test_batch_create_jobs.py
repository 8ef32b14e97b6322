"""BatchCreateJobs over REST: POST /arvados/v1/jobs/batch_create through the gateway."""

from __future__ import annotations

from typing import Any

from tests.gateway.conftest import Stack

PATH = "/arvados/v1/jobs/batch_create"


async def test_batch_create_jobs_over_rest_answers_in_order_all_or_none(stack: Stack) -> None:
    body: dict[str, list[dict[str, Any]]] = {
        "requests": [
            {"job": {"script": "rest.py", "script_parameters": {"i": i}}} for i in range(3)
        ]
    }
    # The last request asks for request 0's job again (find_or_create, Arvados's spelling).
    body["requests"].append({"job": {"script": "rest.py", "script_parameters": {"i": 0}}})
    body["requests"][-1]["find_or_create"] = True
    response = await stack.client.post(PATH, json=body)
    assert response.status_code == 200, response.text
    jobs = response.json()["jobs"]
    assert [j["script_parameters"]["i"] for j in jobs] == [0, 1, 2, 0]
    assert jobs[3]["uuid"] == jobs[0]["uuid"]
    assert all(j["kind"] == "arvados#job" and j["state"] == "Queued" for j in jobs)

    refused = await stack.client.post(
        PATH,
        json={
            "requests": [
                {"job": {"script": "other.py"}},
                {"job": {"script": "other.py", "is_locked_by_uuid": "x"}},
            ]
        },
    )
    assert refused.status_code == 422, refused.text
    assert "requests[1].job.is_locked_by_uuid" in refused.text
    listed = await stack.client.get("/arvados/v1/jobs")
    assert listed.json()["items_available"] == 3

    too_many = {"requests": [{"job": {"script": "x.py"}}] * 1001}
    refused = await stack.client.post(PATH, json=too_many)
    assert refused.status_code == 422, refused.text
    assert "requests" in refused.json()["errors"][0]
