"""Arvados token scopes: which requests a token may make. Pure: strings in, booleans out.

A scope list is `["all"]` or entries `"METHOD /arvados/v1/path"`. An entry allows a request
whose `"METHOD /path"` equals it, or, when the entry ends in `/`, starts with it (Arvados's
code: the scope is a prefix of the request; its documentation states the direction
backwards). A request path's trailing `/` is trimmed before the check, so a listing
`GET /arvados/v1/jobs/` needs `GET /arvados/v1/jobs`, and the prefix `GET /arvados/v1/jobs/`
allows reading single jobs but not listing them. A GET entry also allows HEAD. `[]` allows
nothing but `ALWAYS_ALLOWED`.

gRPC calls are checked against the HTTP bindings of their `google.api.http` annotation
(jobtask.server.auth): an RPC is allowed when any of its bindings is, which is how a PATCH
scope admits UpdateJob/UpdateTask (PUT is their primary binding) and a PUT scope admits a
REST PATCH (the gateway calls the same RPC for both).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from jobtask.domain.errors import InvalidArgument

__all__ = [
    "ALL",
    "ALWAYS_ALLOWED",
    "METHODS",
    "WORKER_SCOPES",
    "check_scopes",
    "narrower",
    "request_string",
    "scopes_allow",
    "scopes_allow_any",
    "task_scopes",
]

ALL = "all"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
API = "/arvados/v1"
# Arvados: "A valid token is always allowed to issue a request to
# GET /arvados/v1/api_client_authorizations/current regardless of its scopes".
ALWAYS_ALLOWED = frozenset(
    {
        f"GET {API}/api_client_authorizations/current",
        f"HEAD {API}/api_client_authorizations/current",
    }
)
# A worker claims tasks, streams their progress (RunTask), reports a process's exit
# (POST /job_tasks/<uuid>/exit, hence the prefix entry) and says goodbye when it stops.
# Nothing else: it cannot create, read, list or change jobs and tasks by itself; a task's
# process gets its own token.
WORKER_SCOPES: tuple[str, ...] = (
    f"POST {API}/job_tasks/claim",
    f"POST {API}/job_tasks/run",
    f"POST {API}/job_tasks/",
    # Its goodbye on a clean shutdown (POST /workers/<id>/stopped).
    f"POST {API}/workers/",
)
_ENTRY = re.compile(r"^([A-Z]+) (/\S*)$")
MAX_SCOPES = 100
MAX_ENTRY = 1000


def request_string(method: str, path: str) -> str:
    """`"METHOD /path"` with the path's trailing `/` trimmed, as scopes are matched."""
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return f"{method.upper()} {path}"


def _allows(scopes: Iterable[str], request: str) -> bool:
    for scope in scopes:
        if scope in (ALL, request) or (scope.endswith("/") and request.startswith(scope)):
            return True
    return False


def scopes_allow(scopes: Iterable[str], method: str, path: str) -> bool:
    """Whether `scopes` permit the request `method path` (Arvados's scopes_allow_request?)."""
    scopes = tuple(scopes)
    request = request_string(method, path)
    if request in ALWAYS_ALLOWED or _allows(scopes, request):
        return True
    if request.startswith("HEAD "):
        return _allows(scopes, "GET " + request.removeprefix("HEAD "))
    return False


def scopes_allow_any(scopes: Iterable[str], requests: Iterable[tuple[str, str]]) -> bool:
    """Whether `scopes` permit at least one of the (method, path) requests."""
    scopes = tuple(scopes)
    return any(scopes_allow(scopes, method, path) for method, path in requests)


def check_scopes(scopes: Sequence[str], field: str = "scopes") -> list[str]:
    """Validates a scope list; names the offending entry. Duplicates are dropped."""
    if len(scopes) > MAX_SCOPES:
        raise InvalidArgument(field, f"at most {MAX_SCOPES} entries")
    out: list[str] = []
    for i, entry in enumerate(scopes):
        if not isinstance(entry, str):
            raise InvalidArgument(f"{field}[{i}]", "must be a string")
        if entry != ALL:
            found = _ENTRY.match(entry)
            if found is None or len(entry) > MAX_ENTRY:
                raise InvalidArgument(
                    f"{field}[{i}]", f"{entry!r} is neither 'all' nor 'METHOD /path'"
                )
            if found.group(1) not in METHODS:
                raise InvalidArgument(f"{field}[{i}]", f"unknown HTTP method {found.group(1)!r}")
        if entry not in out:
            out.append(entry)
    return out


def _covers(parents: Sequence[str], entry: str) -> bool:
    """Whether every request `entry` allows is allowed by `parents`."""
    if ALL in parents or entry in ALWAYS_ALLOWED:
        return True
    if entry == ALL:
        return False
    method, _, path = entry.partition(" ")
    candidates = [entry]
    if method == "HEAD":
        candidates.append("GET " + path)  # a GET scope allows HEAD
    for candidate in candidates:
        if entry.endswith("/"):
            # A prefix is covered only by a prefix that is a prefix of it.
            if any(p.endswith("/") and candidate.startswith(p) for p in parents):
                return True
        elif _allows(parents, candidate):
            return True
    return False


def narrower(requested: Sequence[str], parents: Sequence[str]) -> str | None:
    """None if `requested` allows nothing `parents` does not; else the first wider entry."""
    for entry in requested:
        if not _covers(parents, entry):
            return entry
    return None


def task_scopes(job_uuid: str, task_uuid: str) -> list[str]:
    """A claimed task's own token: read its job, read and update its own task (PUT, and
    PATCH as REST callers send it), create tasks, one or many at once -- the job manager
    confines those to the task's own job."""
    return [
        f"GET {API}/jobs/{job_uuid}",
        f"GET {API}/job_tasks/{task_uuid}",
        f"PUT {API}/job_tasks/{task_uuid}",
        f"PATCH {API}/job_tasks/{task_uuid}",
        f"POST {API}/job_tasks",
        f"POST {API}/job_tasks/batch_create",
    ]
