"""The discovery and OpenAPI documents, generated from the descriptors."""

from __future__ import annotations

from typing import Any

import pytest
from jobtask.gateway.discovery import discovery_document
from jobtask.gateway.openapi import openapi_document
from jobtask.gateway.routing import RouteTable, load_services
from jobtask.gateway.server import SERVICE_MODULES

from tests.gateway.conftest import Stack

ROUTES = RouteTable(load_services(SERVICE_MODULES))


@pytest.fixture(scope="module")
def discovery() -> dict[str, Any]:
    return discovery_document(ROUTES, cluster_id="abcde")


def test_top_level_keys(discovery: dict[str, Any]) -> None:
    assert discovery["kind"] == "discovery#restDescription"
    assert discovery["id"] == "arvados:v1" and discovery["name"] == "arvados"
    assert discovery["version"] == "v1" and discovery["discoveryVersion"] == "v1"
    assert discovery["basePath"] == "/arvados/v1/" and discovery["servicePath"] == "arvados/v1/"
    assert discovery["batchPath"] == "batch" and discovery["uuidPrefix"] == "abcde"
    assert discovery["maxItemsPerResponse"] == 1000 and discovery["maxRequestSize"] > 0
    assert discovery["parameters"]["alt"]["default"] == "json"
    assert set(discovery["parameters"]) >= {"alt", "fields", "key", "oauth_token"}


def test_method_names_are_arvados(discovery: dict[str, Any]) -> None:
    jobs = discovery["resources"]["jobs"]["methods"]
    tasks = discovery["resources"]["job_tasks"]["methods"]
    assert set(jobs) >= {
        "list",
        "get",
        "create",
        "update",
        "delete",
        "queue",
        "queue_size",
        "cancel",
        "lock",
        "requeue",
        "pause",
        "resume",
        "watch",
    }
    assert set(tasks) >= {"list", "get", "create", "update", "delete", "claim", "watch"}
    assert "run" not in tasks  # a bidirectional stream has no HTTP form
    assert jobs["list"]["id"] == "arvados.jobs.list"
    assert jobs["cancel"] == {
        **jobs["cancel"],
        "path": "jobs/{uuid}/cancel",
        "httpMethod": "POST",
        "parameterOrder": ["uuid"],
        "response": {"$ref": "Job"},
    }
    assert jobs["update"]["httpMethod"] == "PUT"  # the primary binding, not PATCH
    assert jobs["queue"]["path"] == "jobs/queue" and jobs["queue"]["httpMethod"] == "GET"
    assert tasks["get"]["parameters"]["uuid"] == {
        "type": "string",
        "required": True,
        "location": "path",
    }


def test_list_parameters_as_arvados_declares_them(discovery: dict[str, Any]) -> None:
    for resource in ("jobs", "job_tasks"):
        params = discovery["resources"][resource]["methods"]["list"]["parameters"]
        types = {name: p["type"] for name, p in params.items()}
        assert types == {
            **types,
            "filters": "array",
            "where": "object",
            "order": "array",
            "select": "array",
            "distinct": "boolean",
            "limit": "integer",
            "offset": "integer",
            "count": "string",
        }
        assert params["limit"]["default"] == "100" and params["offset"]["default"] == "0"
        assert params["count"]["default"] == "exact"
        assert all(p["location"] == "query" for p in params.values())
        assert "cluster_id" in params  # accepted and ignored, so SDK calls passing it work


def test_bodies_and_schemas(discovery: dict[str, Any]) -> None:
    jobs = discovery["resources"]["jobs"]["methods"]
    assert jobs["create"]["request"] == {"required": True, "properties": {"job": {"$ref": "Job"}}}
    tasks = discovery["resources"]["job_tasks"]["methods"]
    assert tasks["update"]["request"]["properties"] == {"job_task": {"$ref": "JobTask"}}
    assert jobs["list"]["response"] == {"$ref": "JobList"}
    assert tasks["list"]["response"] == {"$ref": "JobTaskList"}
    schemas = discovery["schemas"]
    assert schemas["Job"]["uuidPrefix"] == "8i9sb"
    assert schemas["JobTask"]["uuidPrefix"] == "ot0gb"
    props = schemas["Job"]["properties"]
    assert props["created_at"] == {"type": "datetime"}
    assert props["script_parameters"] == {"type": "Hash"}
    assert props["priority"] == {"type": "integer"}
    assert props["running"] == {"type": "boolean"}
    assert schemas["JobTask"]["properties"]["progress"] == {"type": "float"}
    assert schemas["JobList"]["properties"]["items"] == {"type": "array", "items": {"$ref": "Job"}}


def test_every_method_is_complete_for_googleapiclient(discovery: dict[str, Any]) -> None:
    for resource in discovery["resources"].values():
        for method in resource["methods"].values():
            assert {"id", "path", "httpMethod", "parameters", "response"} <= set(method)
            for name in method["parameterOrder"]:
                assert method["parameters"][name]["location"] == "path"
            for param in method["parameters"].values():
                assert param["type"] in {
                    "string",
                    "integer",
                    "boolean",
                    "array",
                    "object",
                    "number",
                }
                assert param["location"] in {"query", "path"}


def test_openapi_document() -> None:
    doc = openapi_document(ROUTES)
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert set(paths["/arvados/v1/jobs/{uuid}"]) == {"get", "put", "patch", "delete"}
    assert "/arvados/v1/job_tasks/run" not in paths
    ops = [op for path in paths.values() for op in path.values()]
    ids = [op["operationId"] for op in ops]
    assert len(ids) == len(set(ids))
    for op in ops:
        assert {"200", "404", "422", "default"} <= set(op["responses"])
    watch = paths["/arvados/v1/jobs/{uuid}/watch"]["get"]
    assert "text/event-stream" in watch["responses"]["200"]["content"]
    schemas = doc["components"]["schemas"]
    assert schemas["Job"]["properties"]["success"] == {"type": "boolean", "nullable": True}
    assert schemas["Job"]["properties"]["priority"]["type"] == "integer"
    assert schemas["JobTask"]["properties"]["status"]["enum"][0] == "unspecified"
    refs = _refs(doc)
    assert refs <= {f"#/components/schemas/{name}" for name in schemas}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


async def test_documents_over_http(stack: Stack) -> None:
    for method in ("GET", "POST"):
        response = await stack.client.request(method, "/discovery/v1/apis/arvados/v1/rest")
        assert response.status_code == 200
        doc = response.json()
        assert doc["rootUrl"] == f"{stack.gateway.url}/"
        assert doc["baseUrl"] == f"{stack.gateway.url}/arvados/v1/"
        max_age = int(response.headers["Cache-Control"].rsplit("max-age=", 1)[1])
        assert 0 < max_age <= 60
    openapi = await stack.client.get("/openapi.json")
    assert openapi.status_code == 200 and openapi.json()["servers"][0]["url"] == stack.gateway.url
