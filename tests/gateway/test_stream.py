"""Watch streams as Server-Sent Events, followed with a streaming HTTP client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from jobtask.store.schema import events
from sqlalchemy import select

from tests.gateway.conftest import ROOT_AUTH, Stack, start_stack
from tests.worker_protocol.packing import UPDATES, watch_counter

_LINES: dict[int, AsyncIterator[str]] = {}


async def read_events(response: httpx.Response, until: Any = None) -> list[dict[str, Any]]:
    """Parses SSE frames until `until(event)` is true or the stream ends."""
    events: list[dict[str, Any]] = []
    frame: dict[str, Any] = {}
    # One line iterator per response, so a second call goes on where the first stopped.
    lines = _LINES.setdefault(id(response), response.aiter_lines())
    async for line in lines:
        if line == "":
            if frame:
                if "data" in frame:
                    frame["json"] = json.loads(frame["data"])
                events.append(frame)
                if until is not None and until(frame):
                    return events
            frame = {}
            continue
        key, _, value = line.partition(":")
        frame[key] = value.removeprefix(" ")
    return events


def is_snapshot_done(frame: dict[str, Any]) -> bool:
    data = frame.get("json") or {}
    return bool(data.get("type") == "snapshot" and data.get("snapshot_done"))


async def test_follow_a_job_until_it_is_canceled(stack: Stack) -> None:
    job = await stack.create_job()
    url = f"/arvados/v1/jobs/{job['uuid']}/watch"
    async with asyncio.timeout(20):
        async with stack.client.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            snapshot = await read_events(response, until=is_snapshot_done)
            assert snapshot, "no snapshot event"
            assert all(int(e["id"]) > 0 for e in snapshot if "id" in e)
            first = snapshot[0]["json"]
            assert first["type"] == "snapshot" and first["job_uuid"] == job["uuid"]
            assert any((e["json"].get("job") or {}).get("uuid") == job["uuid"] for e in snapshot)

            cancel = await stack.client.post(f"/arvados/v1/jobs/{job['uuid']}/cancel")
            assert cancel.status_code == 200, cancel.text

            rest = await read_events(response)  # returns when the stream ends
    statuses = [(e["json"].get("job") or {}).get("status") for e in rest if "json" in e]
    assert "canceled" in statuses, rest
    assert all("event" not in e for e in rest), rest  # no error events
    snapshot_id = max(int(e["id"]) for e in snapshot if "id" in e)

    # An EventSource reconnects with Last-Event-ID and its original URL: the header wins.
    async with asyncio.timeout(20):
        async with stack.client.stream(
            "GET", url, headers={"Last-Event-ID": str(snapshot_id)}, params={"after_seq": "1"}
        ) as resumed:
            assert resumed.status_code == 200
            again = await read_events(resumed, until=is_canceled)
    assert again and all(int(e["id"]) > snapshot_id for e in again if "id" in e), again
    assert not any(e["json"]["type"] == "snapshot" for e in again)


def is_canceled(frame: dict[str, Any]) -> bool:
    return bool(((frame.get("json") or {}).get("job") or {}).get("status") == "canceled")


async def test_resume_with_after_seq_replays_later_events(stack: Stack) -> None:
    job = await stack.create_job()
    url = f"/arvados/v1/jobs/{job['uuid']}/watch"
    async with asyncio.timeout(20):
        async with stack.client.stream("GET", url) as response:
            snapshot = await read_events(response, until=is_snapshot_done)
    seq = max(int(e["id"]) for e in snapshot if "id" in e)
    await stack.client.post(f"/arvados/v1/jobs/{job['uuid']}/cancel")
    async with asyncio.timeout(20):
        async with stack.client.stream("GET", url, params={"after_seq": str(seq)}) as response:
            assert response.status_code == 200
            events = await read_events(response, until=is_canceled)
    assert events and all(int(e["id"]) > seq for e in events if "id" in e)
    assert not any(e["json"]["type"] == "snapshot" for e in events)


async def test_watching_an_unknown_job_is_a_plain_404(stack: Stack) -> None:
    response = await stack.client.get("/arvados/v1/jobs/zzzzz-8i9sb-000000000000000/watch")
    assert response.status_code == 404
    assert response.json()["errors"]


async def test_watch_tasks_of_a_job(stack: Stack) -> None:
    job = await stack.create_job()
    async with asyncio.timeout(20):
        async with stack.client.stream(
            "GET", "/arvados/v1/job_tasks/watch", params={"job_uuid": job["uuid"]}
        ) as response:
            assert response.status_code == 200
            snapshot = await read_events(response, until=is_snapshot_done)
    tasks = [t for e in snapshot for t in e["json"]["tasks"]]
    assert [t["job_uuid"] for t in tasks] == [job["uuid"]]


async def test_a_bad_resume_position_is_422(stack: Stack) -> None:
    job = await stack.create_job()
    response = await stack.client.get(
        f"/arvados/v1/jobs/{job['uuid']}/watch", params={"after_seq": "99999999"}
    )
    assert response.status_code == 422
    assert "after_seq" in response.json()["errors"][0]


async def test_an_error_mid_stream_is_an_error_event(tmp_path: Path) -> None:
    services, gateway = await start_stack(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=20, headers=ROOT_AUTH) as client:
            stack = Stack(services, gateway, client)
            job = await stack.create_job()
            async with asyncio.timeout(20):
                url = f"/arvados/v1/jobs/{job['uuid']}/watch"
                async with client.stream("GET", url) as response:
                    await read_events(response, until=is_snapshot_done)
                    await services.stop(0)  # the service goes away under the stream
                    rest = await read_events(response)
    finally:
        await gateway.stop()
    errors = [e for e in rest if e.get("event") == "error"]
    assert len(errors) == 1 and rest[-1] is errors[0]
    body = errors[0]["json"]
    assert set(body) == {"errors", "error_token"} and body["errors"]


async def test_a_lagging_sse_watch_gets_one_event_per_packed_event(stack: Stack) -> None:
    """The gateway asks the services for packed events and writes each as an SSE event of
    its own: fewer gRPC messages than events, the same events a browser saw before."""
    job = await stack.create_job()
    listed = await stack.client.get(
        "/arvados/v1/job_tasks", params={"where[job_uuid]": job["uuid"]}
    )
    (task,) = listed.json()["items"]
    for i in range(UPDATES):
        task["parameters"] = {"input": "changed", "n": i}
        response = await stack.client.put(
            f"/arvados/v1/job_tasks/{task['uuid']}", data={"job_task": json.dumps(task)}
        )
        assert response.status_code == 200, response.text
    cancel = await stack.client.post(f"/arvados/v1/jobs/{job['uuid']}/cancel")
    assert cancel.status_code == 200, cancel.text

    events_before, messages_before = watch_counter("events"), watch_counter("messages")
    url = f"/arvados/v1/jobs/{job['uuid']}/watch"
    async with asyncio.timeout(20):
        async with stack.client.stream("GET", url, params={"after_seq": "0"}) as response:
            assert response.status_code == 200
            frames = await read_events(response)  # returns when the stream ends
    events_sent = watch_counter("events") - events_before
    messages_sent = watch_counter("messages") - messages_before

    async with stack.services.core.db.read() as conn:
        rows = await conn.execute(
            select(events.c.seq).where(events.c.job_uuid == job["uuid"]).order_by(events.c.seq)
        )
        expected = [seq for (seq,) in rows]
    assert [int(f["id"]) for f in frames] == expected
    assert all("event" not in f and "more" not in f["json"] for f in frames), frames
    assert [f["json"]["seq"] for f in frames] == expected
    updates = [f for f in frames if f["json"]["type"] == "task-changed"]
    assert [f["json"]["task"]["parameters"]["n"] for f in updates[:UPDATES]] == list(range(UPDATES))
    assert events_sent == len(frames) and messages_sent < events_sent


async def test_a_bad_last_event_id_is_422_naming_the_header(stack: Stack) -> None:
    job = await stack.create_job()
    path = f"/arvados/v1/jobs/{job['uuid']}/watch"
    response = await stack.client.get(path, headers={"Last-Event-ID": "abc"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0].startswith("Last-Event-ID: invalid integer"), response.text
