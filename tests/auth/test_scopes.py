"""The scope rule (pure) and the HTTP bindings each RPC is checked against."""

from __future__ import annotations

import pytest
from jobtask.domain.errors import InvalidArgument
from jobtask.domain.scopes import (
    WORKER_SCOPES,
    check_scopes,
    narrower,
    scopes_allow,
    task_scopes,
)
from jobtask.server.auth import method_rules
from jobtask.v1 import auth_service_pb2, job_service_pb2, task_service_pb2

J = "zzzzz-8i9sb-000000000000001"
T = "zzzzz-ot0gb-000000000000001"
RULES = method_rules([job_service_pb2, task_service_pb2, auth_service_pb2])


@pytest.mark.parametrize(
    ("scopes", "method", "path", "allowed"),
    [
        (["all"], "DELETE", "/arvados/v1/jobs/x", True),
        ([], "GET", "/arvados/v1/jobs", False),
        # exact
        (["GET /arvados/v1/jobs"], "GET", "/arvados/v1/jobs", True),
        (["GET /arvados/v1/jobs"], "GET", f"/arvados/v1/jobs/{J}", False),
        (["GET /arvados/v1/jobs"], "POST", "/arvados/v1/jobs", False),
        # a listing's trailing slash is trimmed before the check (Arvados's test)
        (["GET /arvados/v1/jobs"], "GET", "/arvados/v1/jobs/", True),
        # prefix: the scope is a prefix of the request, not the other way round
        (["GET /arvados/v1/jobs/"], "GET", f"/arvados/v1/jobs/{J}", True),
        (["GET /arvados/v1/jobs/"], "GET", f"/arvados/v1/jobs/{J}/watch", True),
        (["GET /arvados/v1/jobs/"], "GET", "/arvados/v1/jobs", False),
        (["GET /arvados/v1/jobs/"], "GET", "/arvados/v1/jobs/", False),
        ([f"GET /arvados/v1/jobs/{J}"], "GET", "/arvados/v1/", False),
        (["GET /arvados/v1/job"], "GET", "/arvados/v1/jobs", False),
        # HEAD rides on GET, not the reverse
        (["GET /arvados/v1/jobs"], "HEAD", "/arvados/v1/jobs", True),
        (["HEAD /arvados/v1/jobs"], "GET", "/arvados/v1/jobs", False),
        # always allowed to a valid token
        ([], "GET", "/arvados/v1/api_client_authorizations/current", True),
        ([], "GET", "/arvados/v1/api_client_authorizations", False),
        # methods are case-insensitive on the request side
        (["POST /arvados/v1/jobs"], "post", "/arvados/v1/jobs", True),
    ],
)
def test_scopes_allow(scopes: list[str], method: str, path: str, allowed: bool) -> None:
    assert scopes_allow(scopes, method, path) is allowed


def test_check_scopes_names_the_bad_entry() -> None:
    assert check_scopes(["all", "GET /arvados/v1/jobs", "all"]) == ["all", "GET /arvados/v1/jobs"]
    for bad in (["GET"], ["get /x"], ["FETCH /x"], ["GET x"], ["GET  /x"], [""]):
        with pytest.raises(InvalidArgument) as err:
            check_scopes(bad)
        assert err.value.field == "scopes[0]"


@pytest.mark.parametrize(
    ("requested", "parents", "wider"),
    [
        (["all"], ["all"], None),
        (["GET /arvados/v1/jobs"], ["all"], None),
        (["all"], ["GET /arvados/v1/jobs"], "all"),
        ([f"GET /arvados/v1/jobs/{J}"], ["GET /arvados/v1/jobs/"], None),
        (["GET /arvados/v1/jobs/x/"], ["GET /arvados/v1/jobs/"], None),
        (["GET /arvados/v1/jobs/"], [f"GET /arvados/v1/jobs/{J}"], "GET /arvados/v1/jobs/"),
        (["GET /arvados/v1/jobs"], ["GET /arvados/v1/jobs/"], "GET /arvados/v1/jobs"),
        (["HEAD /arvados/v1/jobs"], ["GET /arvados/v1/jobs"], None),
        (["GET /arvados/v1/jobs"], ["HEAD /arvados/v1/jobs"], "GET /arvados/v1/jobs"),
        (["POST /arvados/v1/jobs"], ["GET /arvados/v1/jobs"], "POST /arvados/v1/jobs"),
        (["GET /arvados/v1/api_client_authorizations/current"], [], None),
        ([], [], None),
    ],
)
def test_narrower(requested: list[str], parents: list[str], wider: str | None) -> None:
    assert narrower(requested, parents) == wider


def test_every_rpc_has_a_rule_with_an_http_binding() -> None:
    for module in (job_service_pb2, task_service_pb2, auth_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rule = RULES[f"/{service.full_name}/{method.name}"]
                assert rule.bindings, f"{rule.full_method} has no google.api.http annotation"


def test_path_variables_are_filled_from_the_request() -> None:
    cancel = RULES["/jobtask.v1.JobService/CancelJob"]
    assert cancel.requests(job_service_pb2.CancelJobRequest(uuid=J)) == [
        ("POST", f"/arvados/v1/jobs/{J}/cancel")
    ]
    update = RULES["/jobtask.v1.TaskService/UpdateTask"]
    assert update.requests(task_service_pb2.UpdateTaskRequest(uuid=T)) == [
        ("PUT", f"/arvados/v1/job_tasks/{T}"),
        ("PATCH", f"/arvados/v1/job_tasks/{T}"),
    ]
    listing = RULES["/jobtask.v1.JobService/ListJobs"]
    assert listing.requests(job_service_pb2.ListJobsRequest()) == [("GET", "/arvados/v1/jobs")]


def test_a_path_variable_cannot_smuggle_segments() -> None:
    """A prefix scope on one job must not admit another object through a crafted uuid."""
    get = RULES["/jobtask.v1.JobService/GetJob"]
    sneaky = job_service_pb2.GetJobRequest(uuid=f"{J}/../../job_tasks/{T}")
    ((_, path),) = get.requests(sneaky)
    assert "/" not in path.removeprefix("/arvados/v1/jobs/")
    assert get.allows([f"GET /arvados/v1/jobs/{J}/"], sneaky) is False


def test_update_rpcs_accept_put_or_patch_scopes() -> None:
    update = RULES["/jobtask.v1.JobService/UpdateJob"]
    request = job_service_pb2.UpdateJobRequest(uuid=J)
    assert update.allows([f"PUT /arvados/v1/jobs/{J}"], request)
    assert update.allows([f"PATCH /arvados/v1/jobs/{J}"], request)
    assert not update.allows([f"POST /arvados/v1/jobs/{J}"], request)


def test_worker_scopes_allow_claim_run_and_exit_only() -> None:
    def allowed(full: str, request: object) -> bool:
        return RULES[full].allows(WORKER_SCOPES, request)  # type: ignore[arg-type]

    ts = task_service_pb2
    assert allowed("/jobtask.v1.TaskService/ClaimTask", ts.ClaimTaskRequest())
    assert allowed("/jobtask.v1.TaskService/RunTask", None)
    assert allowed("/jobtask.v1.TaskService/ReportTaskExit", ts.ReportTaskExitRequest(uuid=T))
    for name, request in [
        ("CreateTask", ts.CreateTaskRequest()),
        ("GetTask", ts.GetTaskRequest(uuid=T)),
        ("UpdateTask", ts.UpdateTaskRequest(uuid=T)),
        ("ListTasks", ts.ListTasksRequest()),
        ("WatchTasks", ts.WatchTasksRequest()),
    ]:
        assert not allowed(f"/jobtask.v1.TaskService/{name}", request), name
    assert not allowed("/jobtask.v1.JobService/GetJob", job_service_pb2.GetJobRequest(uuid=J))


def test_task_scopes_cover_exactly_its_job_and_task() -> None:
    scopes = task_scopes(J, T)
    other_task = "zzzzz-ot0gb-000000000000002"
    other_job = "zzzzz-8i9sb-000000000000002"
    assert scopes_allow(scopes, "GET", f"/arvados/v1/jobs/{J}")
    assert scopes_allow(scopes, "GET", f"/arvados/v1/job_tasks/{T}")
    assert scopes_allow(scopes, "PUT", f"/arvados/v1/job_tasks/{T}")
    assert scopes_allow(scopes, "PATCH", f"/arvados/v1/job_tasks/{T}")
    assert scopes_allow(scopes, "POST", "/arvados/v1/job_tasks")
    assert not scopes_allow(scopes, "GET", f"/arvados/v1/jobs/{other_job}")
    assert not scopes_allow(scopes, "GET", f"/arvados/v1/job_tasks/{other_task}")
    assert not scopes_allow(scopes, "PATCH", f"/arvados/v1/job_tasks/{other_task}")
    assert not scopes_allow(scopes, "GET", "/arvados/v1/job_tasks")
    assert not scopes_allow(scopes, "POST", f"/arvados/v1/jobs/{J}/cancel")
    assert not scopes_allow(scopes, "DELETE", f"/arvados/v1/job_tasks/{T}")
    assert not scopes_allow(scopes, "POST", f"/arvados/v1/job_tasks/{T}/exit")
