"""The route table: read from the annotations, literal segments before variables."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from jobtask.gateway.routing import PathTemplate, RouteTable, load_services
from jobtask.gateway.server import SERVICE_MODULES


@pytest.fixture(scope="module")
def routes() -> RouteTable:
    return RouteTable(load_services(SERVICE_MODULES))


def rpc(routes: RouteTable, method: str, path: str) -> tuple[str | None, dict[str, str]]:
    match = routes.match(method, path)
    return (match.binding.method.name if match.binding else None), match.variables


@pytest.mark.parametrize(
    ("method", "path", "expected", "variables"),
    [
        ("GET", "/arvados/v1/jobs", "ListJobs", {}),
        ("POST", "/arvados/v1/jobs", "CreateJob", {}),
        ("GET", "/arvados/v1/jobs/queue", "QueueJobs", {}),
        ("GET", "/arvados/v1/jobs/queue_size", "QueueSize", {}),
        (
            "GET",
            "/arvados/v1/jobs/zzzzz-8i9sb-0123456789abcde",
            "GetJob",
            {"uuid": "zzzzz-8i9sb-0123456789abcde"},
        ),
        ("PUT", "/arvados/v1/jobs/x", "UpdateJob", {"uuid": "x"}),
        ("PATCH", "/arvados/v1/jobs/x", "UpdateJob", {"uuid": "x"}),
        ("DELETE", "/arvados/v1/jobs/x", "DeleteJob", {"uuid": "x"}),
        ("POST", "/arvados/v1/jobs/x/cancel", "CancelJob", {"uuid": "x"}),
        ("POST", "/arvados/v1/jobs/x/lock", "LockJob", {"uuid": "x"}),
        ("GET", "/arvados/v1/jobs/x/watch", "WatchJob", {"uuid": "x"}),
        ("GET", "/arvados/v1/job_tasks/watch", "WatchTasks", {}),
        ("GET", "/arvados/v1/job_tasks/t1", "GetTask", {"uuid": "t1"}),
        ("POST", "/arvados/v1/job_tasks/claim", "ClaimTask", {}),
        ("POST", "/arvados/v1/job_tasks/t1/exit", "ReportTaskExit", {"uuid": "t1"}),
        ("GET", "/arvados/v1/jobs/", "ListJobs", {}),  # one trailing slash is ignored
        ("GET", "/arvados/v1/jobs/a%20b", "GetJob", {"uuid": "a b"}),
    ],
)
def test_routes_come_from_the_annotations(
    routes: RouteTable, method: str, path: str, expected: str, variables: dict[str, str]
) -> None:
    assert rpc(routes, method, path) == (expected, variables)


def test_unknown_paths_and_methods(routes: RouteTable) -> None:
    assert rpc(routes, "GET", "/arvados/v1/nothing") == (None, {})
    assert rpc(routes, "GET", "/arvados/v1/jobs/x/cancel/more") == (None, {})
    match = routes.match("POST", "/arvados/v1/jobs/x")
    assert match.binding is None
    assert set(match.allowed) == {"GET", "PUT", "PATCH", "DELETE"}


def test_bidi_streams_are_bound_but_not_served(routes: RouteTable) -> None:
    match = routes.match("POST", "/arvados/v1/job_tasks/run")
    assert match.binding is not None and match.binding.method.name == "RunTask"
    assert not match.binding.served
    watch = routes.match("GET", "/arvados/v1/jobs/x/watch").binding
    assert watch is not None and watch.served and watch.server_streaming


def test_every_annotated_rpc_has_a_route(routes: RouteTable) -> None:
    declared = {
        m.full_name
        for svc in load_services(SERVICE_MODULES)
        for m in svc.methods
        if m.GetOptions().HasExtension(annotations_pb2.http)
    }
    assert {b.method.full_name for b in routes.bindings} == declared
    patch = [b for b in routes.bindings if b.http_method == "PATCH"]
    assert {b.method.name for b in patch} == {"UpdateJob", "UpdateTask"}
    assert not any(b.primary for b in patch)


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/v1/{name=shelves/*}/books", "/v1/shelves/s1/books", {"name": "shelves/s1"}),
        ("/v1/{name=**}", "/v1/a/b/c", {"name": "a/b/c"}),
        ("/v1/things/{id}:cancel", "/v1/things/7:cancel", {"id": "7"}),
        ("/v1/things/{id}:cancel", "/v1/things/7", None),
        ("/v1/*/x", "/v1/anything/x", {}),
        ("/v1/{id}", "/v1/", None),
    ],
)
def test_path_templates(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert PathTemplate.parse(template).match(path) == expected


def test_a_newly_annotated_rpc_is_routed_without_gateway_code() -> None:
    """A service the gateway has never heard of, built at run time, gets its routes."""
    pool = descriptor_pool.DescriptorPool()
    for dep in (descriptor_pb2, http_pb2, annotations_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        dep.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    file = descriptor_pb2.FileDescriptorProto(
        name="demo/v1/demo.proto",
        package="demo.v1",
        syntax="proto3",
        dependency=["google/api/annotations.proto"],
    )
    msg = file.message_type.add(name="PingRequest")
    msg.field.add(
        name="name",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    service = file.service.add(name="DemoService")
    method = service.method.add(
        name="PingDemo", input_type=".demo.v1.PingRequest", output_type=".demo.v1.PingRequest"
    )
    method.options.Extensions[annotations_pb2.http].CopyFrom(
        http_pb2.HttpRule(get="/arvados/v1/demos/{name}/ping")
    )
    pool.Add(file)
    demo = pool.FindServiceByName("demo.v1.DemoService")
    table = RouteTable([demo])
    match = table.match("GET", "/arvados/v1/demos/abc/ping")
    assert match.binding is not None
    assert match.binding.grpc_path == "/demo.v1.DemoService/PingDemo"
    assert match.variables == {"name": "abc"}
