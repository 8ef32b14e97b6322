"""Arvados's REST forms as its callers send them, through a real gateway with httpx: Rails's
bracket parameters (`where[attr]=v`, `order[]=`, `select[]=`, `job[attr]=`) in the query
string, a urlencoded body and a multipart/form-data body."""

from __future__ import annotations

import json
import re
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
    forms: list[list[tuple[str, Any]]] = [
        [("filters[]", json.dumps(condition))],
        [("filters[0][]", part) for part in condition],
    ]
    for params in forms:
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


def _respelled(stamp: str) -> str:
    """Another RFC 3339 spelling of the gateway's own `...T..:..:..123456000Z`: six digits
    and an explicit offset."""
    head, _, fraction = stamp.removesuffix("Z").partition(".")
    return f"{head}.{fraction[:6]}+00:00"


async def test_a_whole_job_record_sent_back_in_every_body_form(stack: Stack) -> None:
    job = await stack.create_job()
    uuid = job["uuid"]
    locked = await stack.client.post(f"/arvados/v1/jobs/{uuid}/lock")
    assert locked.status_code == 200, locked.text
    canceled = await stack.client.post(f"/arvados/v1/jobs/{uuid}/cancel")
    assert canceled.status_code == 200, canceled.text
    record = (await stack.client.get(f"/arvados/v1/jobs/{uuid}")).json()
    assert record["started_at"] and record["cancelled_at"] and record["is_locked_by_uuid"]
    assert isinstance(record["tasks_summary"], dict)

    bodies: list[dict[str, Any]] = [
        {"json": lambda r: {"job": r}},
        {"json": lambda r: r},  # bare attributes (wrap_parameters)
        {"data": lambda r: {"job": json.dumps(r)}},  # the Perl SDK's save
        {"files": lambda r: {"job": (None, json.dumps(r))}},
    ]
    for priority, form in enumerate(bodies, start=1):
        ((how, make),) = form.items()
        # Read afresh each time, so modified_at is the current one; then change one thing.
        whole = (await stack.client.get(f"/arvados/v1/jobs/{uuid}")).json()
        whole["priority"] = priority
        if priority % 2:
            for name in ("created_at", "started_at", "cancelled_at", "finished_at"):
                whole[name] = _respelled(whole[name])
        response = await stack.client.put(f"/arvados/v1/jobs/{uuid}", **{how: make(whole)})
        assert response.status_code == 200, (how, response.text)
        assert response.json()["priority"] == priority
        assert response.json()["started_at"] == record["started_at"]

    # A record read before another change still saves: Arvados drops created_at and the
    # modified_* attributes from every body.
    record["priority"] = 9
    response = await stack.client.put(f"/arvados/v1/jobs/{uuid}", json={"job": record})
    assert response.status_code == 200, response.text
    # A manager-set attribute that differs from the stored one is refused by name.
    fresh = (await stack.client.get(f"/arvados/v1/jobs/{uuid}")).json()
    for name, value in [
        ("tasks_summary", {**fresh["tasks_summary"], "done": 7}),
        ("started_at", "2001-01-01T00:00:00Z"),
        ("is_locked_by_uuid", None),
        ("state", "Queued"),
    ]:
        changed = {**fresh, name: value}
        response = await stack.client.put(f"/arvados/v1/jobs/{uuid}", json={"job": changed})
        assert response.status_code == 422, (name, response.text)
        assert response.json()["errors"][0].startswith(f"{name}:"), response.text


async def test_a_task_record_sent_back_with_new_parameters(stack: Stack) -> None:
    job = await stack.create_job()
    listed = await stack.client.get(
        "/arvados/v1/job_tasks", params={"where[job_uuid]": job["uuid"]}
    )
    (task,) = listed.json()["items"]
    # The seeds leave parameters to callers; only qsequence, job_uuid,
    # created_by_job_task_uuid and the failure and log fields are the manager's.
    task["parameters"] = {"input": "changed", "n": 3}
    response = await stack.client.put(
        f"/arvados/v1/job_tasks/{task['uuid']}", data={"job_task": json.dumps(task)}
    )
    assert response.status_code == 200, response.text
    assert response.json()["parameters"] == {"input": "changed", "n": 3}
    response = await stack.client.patch(
        f"/arvados/v1/job_tasks/{task['uuid']}", json={"qsequence": task["qsequence"] + 1}
    )
    assert response.status_code == 422 and "qsequence" in response.json()["errors"][0]


async def test_integers_in_parameters_stay_exact_or_are_refused(stack: Stack) -> None:
    largest = 2**53 - 1
    job = await stack.create_job(
        script_parameters={"n": 4, "f": 2.5, "l": [1, 2.0], "big": largest}
    )
    raw = (await stack.client.get(f"/arvados/v1/jobs/{job['uuid']}")).text
    for text in ('"n":4', '"f":2.5', '"l":[1,2]', f'"big":{largest}'):
        assert re.search(re.escape(text) + "[,}]", raw), (text, raw)
    # 2^53 and 2^53+1 are one double: refused, never merged into one job.
    for number in (2**53, 2**53 + 1, -(2**53) - 1, 10**30):
        body = {"job": {**job_attrs(), "script_parameters": {"nested": {"x": [number]}}}}
        response = await stack.client.post("/arvados/v1/jobs", json=body)
        assert response.status_code == 422, (number, response.text)
        assert response.json()["errors"][0].startswith("script_parameters.nested.x[0]:")
    (task,) = (
        await stack.client.get("/arvados/v1/job_tasks", params={"where[job_uuid]": job["uuid"]})
    ).json()["items"]
    response = await stack.client.put(
        f"/arvados/v1/job_tasks/{task['uuid']}",
        json={"job_task": {"parameters": {"n": 2**53 + 1}}},
    )
    assert response.status_code == 422 and "parameters.n" in response.json()["errors"][0]


async def test_integer_attributes_out_of_range_are_refused_not_clamped(stack: Stack) -> None:
    job = await stack.create_job()
    for value in ("1e308", str(2**63), str(2**64), "2.5", str(-(2**31) - 1)):
        text = f'{{"job": {{"priority": {value}}}}}'
        response = await stack.client.put(
            f"/arvados/v1/jobs/{job['uuid']}",
            content=text,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 422, (value, response.text)
        assert response.json()["errors"][0].startswith("priority:"), response.text
    assert (await stack.client.get(f"/arvados/v1/jobs/{job['uuid']}")).json()["priority"] == 0
    response = await stack.client.post(
        "/arvados/v1/job_tasks", json={"job_uuid": job["uuid"], "sequence": 2**63}
    )
    assert response.status_code == 422 and response.json()["errors"][0].startswith("sequence:")
    for name in ("min_nodes", "max_tasks_per_node", "min_ram_per_task"):
        body = {"job": {**job_attrs(), "runtime_constraints": {name: 2**64}}}
        response = await stack.client.post("/arvados/v1/jobs", json=body)
        error = response.json()["errors"][0]
        # Named by its path in the job, as the services name a constraint they refuse.
        assert response.status_code == 422 and error.startswith(f"runtime_constraints.{name}:")
    # A list's limit is still clamped, as Arvados clamps it (the SDK pages with sys.maxsize).
    response = await stack.client.get("/arvados/v1/jobs", params={"limit": str(2**64)})
    assert response.status_code == 200 and response.json()["limit"] == 1000


def job_attrs() -> dict[str, Any]:
    return {"script": "exact.py", "repository": "a/b", "script_version": "master"}


async def test_runtime_constraints_answer_as_the_hash_given(stack: Stack) -> None:
    """Arvados answers runtime_constraints with the keys given: a limit not set is no key,
    not a null (a caller comparing the hash it sent with the one it reads back sees them
    equal)."""
    job = await stack.create_job(script="rc.py", runtime_constraints={"min_nodes": 1})
    assert job["runtime_constraints"] == {"min_nodes": 1}
    read = (await stack.client.get(f"/arvados/v1/jobs/{job['uuid']}")).json()
    assert read["runtime_constraints"] == {"min_nodes": 1}
    bare = await stack.create_job(script="rc2.py")
    assert bare["runtime_constraints"] == {}


async def test_create_parameters_in_a_json_body_are_parameters(stack: Stack) -> None:
    """Arvados 1.x clients (arv-run-pipeline-instance) send jobs.create's own parameters
    beside the job: they are parameters, accepted (without effect where jobtask has none),
    not attributes of the job -- in the JSON body as in the query string."""
    extra = {
        "find_or_create": True,
        "minimum_script_version": "abc123",
        "exclude_script_versions": ["def456"],
        "filters": [["script_version", "in git", "abc123"]],
        "select": ["uuid"],
    }
    first = await stack.client.post("/arvados/v1/jobs", json={"job": job_attrs(), **extra})
    assert first.status_code == 200, first.text
    query = {k: json.dumps(v) for k, v in extra.items()}
    again = await stack.client.post("/arvados/v1/jobs", params=query, json={"job": job_attrs()})
    assert again.status_code == 200, again.text
    assert again.json()["uuid"] == first.json()["uuid"]  # find_or_create: the same job
    # A name that is neither an attribute nor a parameter is still refused by name.
    typo = await stack.client.post("/arvados/v1/jobs", json={"job": job_attrs(), "scrpt": "x"})
    assert typo.status_code == 422 and "'scrpt'" in typo.json()["errors"][0], typo.text
