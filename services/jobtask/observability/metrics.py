"""The process's metrics, in prometheus_client's default registry; a process's /metrics
shows those of the parts it runs (COUNTED_BY).

Counters and histograms are counted by the process that saw the event (sum them across
replicas); the gauges that describe the whole system (jobs and tasks by status, queue,
live workers) are read from the store at scrape time (jobtask.observability.collector)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "COUNTED_BY",
    "DB_TRANSACTION_SECONDS",
    "DISPATCH_SECONDS",
    "HTTP_REQUESTS",
    "HTTP_SECONDS",
    "JOBS_FINISHED",
    "JOBS_SUBMITTED",
    "LEASES_EXPIRED",
    "OPEN_STREAMS",
    "PERMANENT_FAILURES",
    "RPCS",
    "RPC_SECONDS",
    "SILENT_SESSIONS",
    "TASKS_CLAIMED",
    "TASKS_FINISHED",
    "TASK_RETRIES",
    "TASK_RUN_SECONDS",
    "TOKENS_REFUSED",
    "WATCH_EVENTS",
    "WATCH_MESSAGES",
    "counted_by",
]

# Seconds: from a few milliseconds to an hour; dispatch and run times span that range.
_LONG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_SHORT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

JOBS_SUBMITTED = Counter("jobtask_jobs_submitted", "Jobs created")
JOBS_FINISHED = Counter("jobtask_jobs_finished", "Jobs that reached a final status", ["status"])
TASKS_CLAIMED = Counter("jobtask_tasks_claimed", "Task attempts handed to workers")
TASKS_FINISHED = Counter(
    "jobtask_tasks_finished", "Task attempts ended, by the task's resulting status", ["status"]
)
TASK_RETRIES = Counter(
    "jobtask_task_retries", "Attempts that ended in a temporary failure (the task is retried)"
)
PERMANENT_FAILURES = Counter(
    "jobtask_task_permanent_failures", "Tasks failed for good (retries exhausted or no success)"
)
LEASES_EXPIRED = Counter("jobtask_leases_expired", "Attempts ended by the lease reaper")
TOKENS_REFUSED = Counter(
    "jobtask_tokens_refused", "Calls refused for a missing, unknown or expired token"
)
DISPATCH_SECONDS = Histogram(
    "jobtask_dispatch_seconds",
    "From a task becoming runnable (its last change while queued) to its claim",
    buckets=_LONG_BUCKETS,
)
TASK_RUN_SECONDS = Histogram(
    "jobtask_task_run_seconds", "From claim to the attempt's end", buckets=_LONG_BUCKETS
)
OPEN_STREAMS = Gauge(
    "jobtask_open_streams",
    "Open streams of this process (run: RunTask; session: WorkerSession; watch)",
    ["kind"],
)
SILENT_SESSIONS = Gauge(
    "jobtask_silent_worker_sessions",
    "WorkerSession streams of this process whose worker sent nothing for two of its promised"
    " heartbeat intervals (stopped or hung): assigned nothing until it speaks",
)
WATCH_EVENTS = Counter("jobtask_watch_events", "Change-feed events sent on watch streams")
WATCH_MESSAGES = Counter(
    "jobtask_watch_messages",
    "Watch stream messages that carried them (fewer than events when packed: WatchEvent.more)",
)
RPCS = Counter("jobtask_rpcs", "gRPC calls handled, by method and status code", ["method", "code"])
RPC_SECONDS = Histogram(
    "jobtask_rpc_seconds",
    "gRPC call durations (streams: until they end)",
    ["method"],
    buckets=_SHORT_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "jobtask_http_requests", "Gateway HTTP requests, by route and status", ["route", "status"]
)
HTTP_SECONDS = Histogram(
    "jobtask_http_seconds", "Gateway HTTP request durations", ["route"], buckets=_SHORT_BUCKETS
)
DB_TRANSACTION_SECONDS = Histogram(
    "jobtask_db_transaction_seconds",
    "Write transactions, from asking for a connection to commit",
    buckets=_SHORT_BUCKETS,
)

# What each part of the system moves. A process's /metrics shows the metrics of the parts it
# runs only: a series that nothing in the process can move would pass for a measured 0 (the
# gateway's showed every task counter at 0 while the services counted them).
_SERVICES = (
    JOBS_FINISHED,  # a job settles in either service (a cancel; its last task's end)
    TOKENS_REFUSED,
    OPEN_STREAMS,
    WATCH_EVENTS,
    WATCH_MESSAGES,
    RPCS,
    RPC_SECONDS,
    DB_TRANSACTION_SECONDS,
)
COUNTED_BY: dict[str, tuple[MetricWrapperBase, ...]] = {
    "jobs": (*_SERVICES, JOBS_SUBMITTED),
    "tasks": (
        *_SERVICES,
        TASKS_CLAIMED,
        TASKS_FINISHED,
        TASK_RETRIES,
        PERMANENT_FAILURES,
        LEASES_EXPIRED,
        DISPATCH_SECONDS,
        TASK_RUN_SECONDS,
        SILENT_SESSIONS,
    ),
    "gateway": (HTTP_REQUESTS, HTTP_SECONDS),
}
# The kinds of stream each service serves (WatchJob; WatchTasks, RunTask, WorkerSession).
_STREAM_KINDS = {"jobs": ("watch",), "tasks": ("run", "session", "watch")}


def counted_by(parts: Iterable[str]) -> list[MetricWrapperBase]:
    """The metrics the parts move, each once; the kinds of stream they serve are made, so
    that their gauges show 0 before the first stream opens."""
    found: dict[int, MetricWrapperBase] = {}
    for part in parts:
        for metric in COUNTED_BY[part]:
            found.setdefault(id(metric), metric)
        for kind in _STREAM_KINDS.get(part, ()):
            OPEN_STREAMS.labels(kind)
    return list(found.values())
