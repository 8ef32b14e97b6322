"""Arvados's REST forms as its callers send them, through a real gateway with httpx: Rails's
bracket parameters (`where[attr]=v`, `order[]=`, `select[]=`, `job[attr]=`) in the query
string, a urlencoded body and a multipart/form-data body."""

from __future__ import annotations

import json
from typing import Any

from tests.gateway.conftest import Stack


async def _jobs(stack: Stack) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    x = await stack.create_job(script="x.py")
    y = await stack.create_job(script="y.py", priority=3)
    x2 = await stack.create_job(script="x.py", script_parameters={"input": "2"}, priority=7)
    return x, y, x2


def _uuids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["uuid"] for item in response.json()["items"]}


async def test_queue_by_post_with_method_get_and_where_in_the_form_body(stack: Stack) -> None:
    x, _, x2 = await _jobs(stack)
    # Seed 004: POST .../jobs/queue with the body `_method=GET&where[owner_uuid]=...`.
    response = await stack.client.post(
        "/arvados/v1/jobs/queue", data={"_method": "GET", "where[script]": "x.py"}
    )
    assert _uuids(response) == {x["uuid"], x2["uuid"]}
    response = await stack.client.post(
        "/arvados/v1/jobs/queue",
        data={"_method": "GET", "where[owner_uuid]": x["owner_uuid"], "where[priority]": "7"},
    )
    assert _uuids(response) == {x2["uuid"]}


async def test_where_order_and_select_brackets_in_the_query_string(stack: Stack) -> None:
    x, y, x2 = await _jobs(stack)
    response = await stack.client.get(
        "/arvados/v1/jobs",
        params=[
            ("where[script]", "x.py"),
            ("order[]", "priority desc"),
            ("order[]", "uuid"),
            ("select[]", "uuid"),
            ("select[]", "priority"),
        ],
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["uuid"] for i in items] == [x2["uuid"], x["uuid"]]
    assert set(items[0]) == {"uuid", "priority", "kind"}
    # An array under where[] is `in`, as in Arvados.
    response = await stack.client.get(
        "/arvados/v1/jobs/queue", params=[("where[priority][]", "3"), ("where[priority][]", "7")]
    )
    assert _uuids(response) == {y["uuid"], x2["uuid"]}


async def test_job_tasks_list_with_where_and_bracketed_filters(stack: Stack) -> None:
    x, y, _ = await _jobs(stack)
    response = await stack.client.get(
        "/arvados/v1/job_tasks", params={"where[job_uuid]": x["uuid"], "where[sequence]": "0"}
    )
    (seed,) = response.json()["items"]
    assert seed["job_uuid"] == x["uuid"]
    condition = ["job_uuid", "=", y["uuid"]]
    for params in (
        [("filters[]", json.dumps(condition))],
        [("filters[0][]", part) for part in condition],
    ):
        response = await stack.client.get("/arvados/v1/job_tasks", params=params)
        assert {i["job_uuid"] for i in response.json()["items"]} == {y["uuid"]}, params
    response = await stack.client.post(
        "/arvados/v1/job_tasks", data={"_method": "GET", "where[job_uuid]": y["uuid"]}
    )
    assert {i["job_uuid"] for i in response.json()["items"]} == {y["uuid"]}


async def test_a_bad_bracket_filter_is_422_naming_it(stack: Stack) -> None:
    response = await stack.client.get("/arvados/v1/jobs", params={"where[nonesuch]": "1"})
    assert response.status_code == 422
    assert "where[nonesuch]" in response.json()["errors"][0]
    response = await stack.client.get(
        "/arvados/v1/jobs", params=[("where[a]", "1"), ("where[]", "2")]
    )
    assert response.status_code == 422
    assert "where[]" in response.json()["errors"][0]


async def test_create_with_job_brackets_in_a_form_body(stack: Stack) -> None:
    response = await stack.client.post(
        "/arvados/v1/jobs",
        data={
            "job[script]": "form.py",
            "job[repository]": "a/b",
            "job[script_version]": "master",
            "job[script_parameters][input]": "from a form",
            "job[priority]": "4",
        },
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["script"] == "form.py" and job["priority"] == 4
    assert job["script_parameters"] == {"input": "from a form"}


async def test_multipart_bodies_are_form_bodies(stack: Stack) -> None:
    body = {
        "script": "multi.py",
        "repository": "a/b",
        "script_version": "master",
        "script_parameters": {"input": "m"},
    }
    response = await stack.client.post("/arvados/v1/jobs", files={"job": (None, json.dumps(body))})
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["script"] == "multi.py"
    # A file part (`curl -F job=@update.json`) is a field holding the file's text.
    response = await stack.client.put(
        f"/arvados/v1/jobs/{created['uuid']}",
        files={"job": ("update.json", json.dumps({"priority": 9}), "application/json")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["priority"] == 9
    await stack.create_job(script="other.py")
    response = await stack.client.post(
        "/arvados/v1/jobs/queue",
        files={"_method": (None, "GET"), "where[script]": (None, "multi.py")},
    )
    assert _uuids(response) == {created["uuid"]}
    response = await stack.client.post(
        "/arvados/v1/jobs",
        content=b'--x\r\nContent-Disposition: form-data; name="job"\r\n\r\n{',
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 422, response.text
