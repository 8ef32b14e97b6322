"""The gateway's metrics and access log label each request with a bounded value: the path
template that matched (whatever the status: 401 before any endpoint ran, 404, 405, 422), a
fixed route's path, or `unmatched`; never the request's own path, whose ids would each make
new Prometheus series."""

from __future__ import annotations

import logging
import secrets

import httpx
import pytest
from jobtask.gateway.routing import RouteTable, load_services
from jobtask.gateway.server import SERVICE_MODULES
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import Stack

FIXED = {
    "/",
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/discovery/v1/apis/arvados/v1/rest",
    "/_dashboard/{path}",
    "unmatched",
}
HTTP_METRICS = ("jobtask_http_requests_total", "jobtask_http_seconds")


def route_labels() -> set[tuple[str, str]]:
    """(route, status) of every gateway HTTP sample the process's /metrics text has;
    status "" for the duration histogram."""
    found: set[tuple[str, str]] = set()
    for family in text_string_to_metric_families(generate_latest().decode()):
        for sample in family.samples:
            if sample.name.startswith(HTTP_METRICS):
                found.add((sample.labels["route"], sample.labels.get("status", "")))
    return found


async def test_labels_are_templates_or_unmatched(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobtask.access")
    raw = secrets.token_hex(6)  # in every free-form path segment below
    expected: dict[str, tuple[str, int]] = {}  # path -> (label, status)
    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=20) as anonymous:
        for path, label in [
            (f"/arvados/v1/jobs/garbage1{raw}", "/arvados/v1/jobs/{uuid}"),
            (f"/arvados/v1/jobs/garbage2{raw}", "/arvados/v1/jobs/{uuid}"),
            (
                f"/arvados/v1/job_tasks/anything1{raw}/attempts",
                "/arvados/v1/job_tasks/{uuid}/attempts",
            ),
            (f"/arvados/v1/workers/wA{raw}", "/arvados/v1/workers/{worker_id}"),
        ]:
            answer = await anonymous.get(path)  # no token: the service refuses it
            assert answer.status_code == 401, (path, answer.text)
            expected[path] = (label, 401)
        refused = await anonymous.get(
            f"/arvados/v1/jobs/garbage3{raw}", params={"api_token": "x" * 5000}
        )
        assert refused.status_code == 401, refused.text  # refused by the gateway itself
        expected[f"/arvados/v1/jobs/garbage3{raw}"] = ("/arvados/v1/jobs/{uuid}", 401)
        preflight = await anonymous.options(f"/arvados/v1/jobs/garbage4{raw}")
        assert preflight.status_code == 200
        expected[f"/arvados/v1/jobs/garbage4{raw}"] = ("/arvados/v1/jobs/{uuid}", 200)
        dashboard = await anonymous.get(f"/_dashboard/{raw}.js")
        assert dashboard.status_code == 404
        expected[f"/_dashboard/{raw}.js"] = ("/_dashboard/{path}", 404)

    http = stack.client  # the root token
    for path, label in [
        (f"/arvados/v1/jobs/garbage5{raw}", "/arvados/v1/jobs/{uuid}"),
        (f"/arvados/v1/jobs/zzzzz-8i9sb-{raw:0>15}", "/arvados/v1/jobs/{uuid}"),
        (f"/arvados/v1/job_tasks/anything2{raw}/attempts", "/arvados/v1/job_tasks/{uuid}/attempts"),
        (f"/arvados/v1/workers/wB{raw}", "/arvados/v1/workers/{worker_id}"),
        (f"/nowhere/{raw}", "unmatched"),
        (f"/arvados/v1/{raw}", "unmatched"),
    ]:
        answer = await http.get(path)
        assert answer.status_code in (404, 422), (path, answer.status_code, answer.text)
        expected[path] = (label, answer.status_code)
    wrong_method = await http.post(f"/arvados/v1/jobs/garbage6{raw}")
    assert wrong_method.status_code == 405, wrong_method.text
    expected[f"/arvados/v1/jobs/garbage6{raw}"] = ("/arvados/v1/jobs/{uuid}", 405)

    labels = route_labels()
    templates = {b.template.text for b in RouteTable(load_services(SERVICE_MODULES)).bindings}
    assert {route for route, _ in labels} <= templates | FIXED, labels
    assert not [route for route, _ in labels if raw in route], labels
    for label, status in expected.values():
        assert (label, str(status)) in labels, (label, status, labels)
        assert (label, "") in labels, label  # the duration histogram too

    # The gateway's lines (the in-process services write `rpc` lines to this logger too).
    access = [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "jobtask.access" and r.msg == "http"
    ]
    assert not [line for line in access if raw in str(line)], access
    logged = {(line["route"], line["status"]) for line in access}
    assert set(expected.values()) <= logged, (expected, logged)
