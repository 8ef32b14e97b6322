"""The HTTP conventions, end to end: real services, real gateway, a real HTTP client."""

from __future__ import annotations

import json
import re
import socket
import sys
from urllib.parse import urlencode

import grpc
import httpx
from jobtask.domain.resources import JOB_ATTRS, TASK_ATTRS
from jobtask.gateway import serve_gateway
from jobtask.gateway.errors import HTTP_STATUS

from tests.gateway.conftest import JOB, ROOT_TOKEN, Stack

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ERROR_TOKEN = re.compile(r"\d{10}\+[0-9a-f]{8}")


def assert_error(response: httpx.Response, status: int, *needles: str) -> list[str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors", "error_token"}
    assert ERROR_TOKEN.fullmatch(body["error_token"])
    text = "; ".join(body["errors"])
    for needle in needles:
        assert needle in text, text
    assert "Traceback" not in text
    errors: list[str] = body["errors"]
    return errors


async def test_create_answers_200_with_the_whole_object(stack: Stack) -> None:
    job = await stack.create_job()
    assert re.fullmatch(r"zzzzz-8i9sb-[0-9a-z]{15}", job["uuid"])
    assert job["kind"] == "arvados#job" and job["href"] == f"/jobs/{job['uuid']}"
    assert job["etag"] and job["status"] == "queued" and job["state"] == "Queued"
    assert job["script_parameters"] == {"input": "x"}
    assert job["success"] is None and job["output"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", job["created_at"])


async def test_create_body_forms(stack: Stack) -> None:
    c = stack.client
    bare = await c.post("/arvados/v1/jobs", json={**JOB, "script": "bare.py"})
    form = await c.post(
        "/arvados/v1/jobs",
        content=urlencode({"job": json.dumps({**JOB, "script": "form.py"})}),
        headers=FORM,
    )
    for response, script in ((bare, "bare.py"), (form, "form.py")):
        assert response.status_code == 200, response.text
        assert response.json()["script"] == script


async def test_unknown_attribute_is_422_naming_it(stack: Stack) -> None:
    response = await stack.client.post("/arvados/v1/jobs", json={"job": {**JOB, "badattr": 1}})
    assert_error(response, 422, "badattr")


async def test_task_update_as_the_python_sdk_sends_it(stack: Stack) -> None:
    job = await stack.create_job()
    c = stack.client
    tasks = (
        await c.get(
            "/arvados/v1/job_tasks",
            params={"filters": json.dumps([["job_uuid", "=", job["uuid"]]]), "alt": "json"},
        )
    ).json()
    assert tasks["kind"] == "arvados#jobTaskList" and tasks["items_available"] == 1
    task = tasks["items"][0]
    response = await c.put(
        f"/arvados/v1/job_tasks/{task['uuid']}?alt=json",
        json={"progress": 0.5, "kind": "arvados#jobTask", "etag": task["etag"]},
        headers={"Authorization": f"OAuth2 {ROOT_TOKEN}"},  # as the Python SDK 2.7 sends it
    )
    assert response.status_code == 200, response.text
    assert response.json()["progress"] == 0.5
    child = await c.post(
        "/arvados/v1/job_tasks?alt=json",
        json={
            "job_uuid": job["uuid"],
            "created_by_job_task_uuid": task["uuid"],
            "sequence": 1,
            "parameters": {"input": ". d41d8cd98f00b204e9800998ecf8427e+0 0:0:a.txt\n"},
        },
    )
    assert child.status_code == 200, child.text
    assert child.json()["kind"] == "arvados#jobTask" and child.json()["sequence"] == 1


async def test_list_envelope_select_order_and_limit_clamping(stack: Stack) -> None:
    for priority in (1, 3, 2):
        await stack.create_job(priority=priority, script=f"p{priority}.py")
    response = await stack.client.get(
        "/arvados/v1/jobs",
        params={
            "limit": str(sys.maxsize),
            "order": "priority desc,uuid",
            "select": '["uuid","priority"]',
            "count": "exact",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"kind", "etag", "self_link", "offset", "limit", "items", "items_available"}
    assert body["kind"] == "arvados#jobList" and body["limit"] == 1000
    assert body["items_available"] == 3 and body["offset"] == 0
    assert [i["priority"] for i in body["items"]] == [3, 2, 1]
    assert all(set(i) == {"uuid", "priority", "kind"} for i in body["items"])
    json_order = await stack.client.get(
        "/arvados/v1/jobs", params={"order": '["priority asc"]', "limit": "2"}
    )
    assert [i["priority"] for i in json_order.json()["items"]] == [1, 2]
    uncounted = await stack.client.get("/arvados/v1/jobs", params={"count": "none"})
    assert uncounted.status_code == 200, uncounted.text
    assert "items_available" not in uncounted.json() and len(uncounted.json()["items"]) == 3


async def test_method_override_get(stack: Stack) -> None:
    job = await stack.create_job()
    filters = json.dumps([["uuid", "=", job["uuid"]]])
    c = stack.client
    in_form = await c.post(
        "/arvados/v1/jobs", headers=FORM, content=urlencode({"_method": "GET", "filters": filters})
    )
    in_query = await c.post("/arvados/v1/jobs?_method=GET&" + urlencode({"filters": filters}))
    header = await c.post(
        "/arvados/v1/jobs",
        content=urlencode({"filters": filters}),
        headers={**FORM, "X-HTTP-Method-Override": "GET"},
    )
    for response in (in_form, in_query, header):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["kind"] == "arvados#jobList"
        assert [i["uuid"] for i in body["items"]] == [job["uuid"]]


async def test_queue_and_queue_size_are_not_taken_for_uuids(stack: Stack) -> None:
    job = await stack.create_job()
    queue = await stack.client.get("/arvados/v1/jobs/queue?")  # a trailing ? is tolerated
    assert queue.status_code == 200 and queue.json()["items"][0]["uuid"] == job["uuid"]
    size = await stack.client.get("/arvados/v1/jobs/queue_size")
    assert size.json() == {"queue_size": 1}


async def test_error_statuses(stack: Stack) -> None:
    c = stack.client
    assert_error(await c.get("/arvados/v1/jobs/zzzzz-8i9sb-000000000000000"), 404)
    assert_error(await c.get("/arvados/v1/nothing/here"), 404, "Path not found")
    assert_error(await c.get("/elsewhere"), 404, "Path not found")
    errors = assert_error(
        await c.get(
            "/arvados/v1/jobs", params={"filters": json.dumps([["uuid", "frobnicate", "x"]])}
        ),
        422,
        "frobnicate",
    )
    assert errors
    assert_error(await c.get("/arvados/v1/jobs", params={"limit": "lots"}), 422, "limit")
    assert_error(await c.get("/arvados/v1/jobs", params={"filters": "[["}), 422, "filters")
    bidi = await c.post("/arvados/v1/job_tasks/run", json={})
    assert_error(bidi, 405, "RunTask")
    job = await stack.create_job()
    done = await c.post(f"/arvados/v1/jobs/{job['uuid']}/cancel")
    assert done.status_code == 200
    # Locking a canceled job is a state conflict: 422, not 5xx.
    assert_error(await c.post(f"/arvados/v1/jobs/{job['uuid']}/lock"), 422)
    assert HTTP_STATUS[grpc.StatusCode.FAILED_PRECONDITION] == 422


async def test_cors_and_preflight(stack: Stack) -> None:
    response = await stack.client.options("/arvados/v1/jobs")
    assert response.status_code == 200 and response.content == b""
    for r in (response, await stack.client.get("/arvados/v1/jobs/queue_size")):
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Access-Control-Allow-Methods"] == "GET, HEAD, PUT, POST, DELETE"
        assert r.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
        assert r.headers["Access-Control-Max-Age"] == "86486400"


async def test_request_ids(stack: Stack) -> None:
    c = stack.client
    mine = await c.get("/arvados/v1/jobs/queue_size", headers={"X-Request-Id": "req-mine"})
    assert mine.headers["X-Request-Id"] == "req-mine"
    generated = await c.get("/arvados/v1/jobs/queue_size")
    assert re.fullmatch(r"req-[0-9a-z]{20}", generated.headers["X-Request-Id"])
    too_long = await c.get("/arvados/v1/jobs/queue_size", headers={"X-Request-Id": "x" * 1025})
    assert re.fullmatch(r"req-[0-9a-z]{20}", too_long.headers["X-Request-Id"])
    error = await c.get("/arvados/v1/nothing")
    assert re.fullmatch(r"req-[0-9a-z]{20}", error.headers["X-Request-Id"])


async def test_verbs(stack: Stack) -> None:
    job = await stack.create_job()
    c = stack.client
    paused = await c.post(f"/arvados/v1/jobs/{job['uuid']}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] in ("paused", "pause-requested")
    resumed = await c.post(f"/arvados/v1/jobs/{job['uuid']}/resume")
    assert resumed.status_code == 200, resumed.text
    deleted = await c.delete(f"/arvados/v1/jobs/{job['uuid']}")
    assert deleted.status_code == 200 and deleted.json()["uuid"] == job["uuid"]
    assert_error(await c.get(f"/arvados/v1/jobs/{job['uuid']}"), 404)


async def test_head_and_patch(stack: Stack) -> None:
    job = await stack.create_job()
    c = stack.client
    head = await c.head(f"/arvados/v1/jobs/{job['uuid']}")
    assert head.status_code == 200 and head.content == b""
    patched = await c.patch(f"/arvados/v1/jobs/{job['uuid']}", json={"priority": 7})
    assert patched.status_code == 200, patched.text
    assert patched.json()["priority"] == 7


async def test_paths_the_router_cannot_parse_still_get_arvados_errors(stack: Stack) -> None:
    assert_error(await stack.client.post("/arvados/v1/jobs/%0AY/requeue"), 404, "Path not found")


async def test_wrong_method_is_405_with_allow(stack: Stack) -> None:
    response = await stack.client.post("/arvados/v1/jobs/queue_size")
    assert_error(response, 405)
    assert "GET" in response.headers["Allow"] and "HEAD" in response.headers["Allow"]
    bidi = await stack.client.post("/arvados/v1/job_tasks/run")
    assert_error(bidi, 405, "RunTask")
    assert "POST" not in bidi.headers["Allow"]


async def test_services_down_is_503_with_retry_after() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    gateway = await serve_gateway("127.0.0.1:0", dead, dead)
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            response = await client.get("/arvados/v1/jobs/queue_size")
    finally:
        await gateway.stop()
    assert_error(response, 503)
    assert response.headers["Retry-After"] == "1"


async def test_odd_tokens_and_request_ids_are_not_a_500(stack: Stack) -> None:
    c = stack.client
    odd = await c.get("/arvados/v1/jobs/queue_size", params={"api_token": "tök\n"})
    assert_error(odd, 401)
    header = await c.get(
        "/arvados/v1/jobs/queue_size", headers={b"X-Request-Id": "req-\u00e9".encode("latin-1")}
    )
    assert header.status_code == 200
    assert re.fullmatch(r"req-[0-9a-z]{20}", header.headers["X-Request-Id"])


def compact(body: object) -> bytes:
    """JSON as the gateway writes it (rendering.dumps)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def test_select_answers_are_the_whole_items_attributes(stack: Stack) -> None:
    """REST select, whatever the services send for it: byte for byte the whole answer with
    each item cut to the named attributes as the whole item renders them, in the order
    named, then `kind` (Arvados's `@select |= ["kind"]`), for every attribute of jobs and
    tasks."""
    job = await stack.create_job(runtime_constraints={"min_nodes": 1, "max_tasks_per_node": 2})
    filters = json.dumps([["uuid", "=", job["uuid"]]])
    task_filters = json.dumps([["job_uuid", "=", job["uuid"]]])
    for path, attrs, query in (
        ("/arvados/v1/jobs", JOB_ATTRS, filters),
        ("/arvados/v1/jobs/queue", JOB_ATTRS, filters),
        ("/arvados/v1/job_tasks", TASK_ATTRS, task_filters),
    ):
        whole = await stack.client.get(path, params={"filters": query})
        assert whole.status_code == 200, whole.text
        body = whole.json()
        assert whole.content == compact(body)
        (item,) = body["items"]
        assert set(attrs) <= set(item)
        assert item["kind"] in ("arvados#job", "arvados#jobTask")
        selects = [[name] for name in attrs] + [list(reversed(attrs)), ["uuid", "kind", "etag"]]
        for select in selects:
            response = await stack.client.get(
                path, params={"filters": query, "select": json.dumps(select)}
            )
            assert response.status_code == 200, response.text
            wanted = [*select, *(["kind"] if "kind" not in select else [])]
            picked = {name: item[name] for name in wanted}
            assert response.content == compact({**body, "items": [picked]}), select
