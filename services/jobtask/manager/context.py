"""Who is calling, and how the manager is configured."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

from jobtask.domain.reports import TASK_LOG_EVENT_LIMIT
from jobtask.domain.rules import DEFAULT_RETRY_LIMIT
from jobtask.domain.scheduling import DEFAULT_BLOCKLIST_THRESHOLD, Backoff
from jobtask.domain.uuids import check_cluster_id, system_user_uuid

DEFAULT_WORKER_RETENTION = dt.timedelta(days=7)


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request."""

    user_uuid: str
    is_admin: bool = False
    client_uuid: str | None = None
    # Set when the caller holds a claimed task's own token: the task it may report for.
    task_uuid: str | None = None
    # Set for the job manager itself (internal moves) and the system root token.
    is_system: bool = False


def _task_log_event_limit() -> int:
    value = os.environ.get("JOBTASK_TASK_LOG_EVENT_LIMIT")
    return int(value) if value else TASK_LOG_EVENT_LIMIT


@dataclass(frozen=True)
class Settings:
    cluster_id: str = "zzzzz"
    retry_limit: int = DEFAULT_RETRY_LIMIT
    lease_ttl: dt.timedelta = field(default_factory=lambda: dt.timedelta(seconds=30))
    # The change feed keeps events younger than this, and the last `feed_keep_events`
    # whatever their age; older ones are pruned (watchers resuming before them must re-read).
    feed_keep: dt.timedelta = field(default_factory=lambda: dt.timedelta(hours=24))
    feed_keep_events: int = 100_000
    # Retry backoff of temporarily failed tasks, unless their job's constraints say otherwise.
    backoff: Backoff = field(default_factory=Backoff)
    # Failed tasks of one job after which a worker is blocklisted for it (0: never).
    blocklist_threshold: int = DEFAULT_BLOCKLIST_THRESHOLD
    # Claims take turns between owners at equal priority (else: strictly by arrival).
    fair_share: bool = True
    # Bytes of TASK_LOG events one attempt of a task may store ($JOBTASK_TASK_LOG_EVENT_LIMIT).
    task_log_event_limit: int = field(default_factory=_task_log_event_limit)
    # The registry forgets a stopped or lost worker not seen for this long (its attempts
    # keep its id): worker ids are new at every start, so rows would otherwise pile up.
    worker_retention: dt.timedelta = field(default_factory=lambda: DEFAULT_WORKER_RETENTION)

    def __post_init__(self) -> None:
        check_cluster_id(self.cluster_id)
        if self.retry_limit < 1:
            raise ValueError("retry_limit must be at least 1")
        if self.blocklist_threshold < 0:
            raise ValueError("blocklist_threshold must not be negative")
        if self.task_log_event_limit < 0:
            raise ValueError("task_log_event_limit must not be negative")
        if self.worker_retention <= dt.timedelta(0):
            raise ValueError("worker_retention must be above 0")

    @property
    def heartbeat_interval(self) -> dt.timedelta:
        """How often a worker renews its lease: three tries before it expires. The reaper
        runs as often, so an expired lease is found within one interval of expiring."""
        return self.lease_ttl / 3

    @property
    def live_horizon(self) -> dt.timedelta:
        """A worker seen within this long is live (capable, counted for min_nodes)."""
        return 2 * self.lease_ttl

    @property
    def system_user(self) -> str:
        return system_user_uuid(self.cluster_id)

    def system_caller(self) -> Caller:
        return Caller(user_uuid=self.system_user, is_admin=True, is_system=True)


@dataclass(frozen=True)
class WorkerSpec:
    """A worker asking for tasks, as it describes itself."""

    worker_id: str
    node_name: str
    ram_kib: int = 0
    cores: int = 0
    free_slots: int = 1
    tags: tuple[str, ...] = field(default_factory=tuple)
    # All of its slots (older workers do not say: then its free slots at claim time).
    slots: int = 0
    # Seconds within which a session's worker promised a message (0: no promise; see
    # WorkerInfo.heartbeat_interval).
    heartbeat_interval: float = 0.0
    # When the worker was last heard from, recorded as its last_seen_at by a claim made for
    # it (None: the claim is its request, so now). A session's claims are the server's own
    # doing: a hung worker's credits must not keep it live.
    seen_at: dt.datetime | None = None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
