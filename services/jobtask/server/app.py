"""Building and running the gRPC servers: one factory per service, both in one process
(`serve_all`, for `jobtask up` and tests) or one per process (`jobtask serve ...`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio  # the asyncio HealthServicer
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from jobtask.domain.scheduling import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_BLOCKLIST_THRESHOLD,
    Backoff,
)
from jobtask.manager.claims import ClaimManager
from jobtask.manager.context import DEFAULT_WORKER_RETENTION, Settings
from jobtask.manager.jobs import JobManager
from jobtask.manager.reports import ReportManager
from jobtask.manager.tasks import TaskManager
from jobtask.manager.tokens import TokenManager
from jobtask.server import upkeep
from jobtask.server.access import AccessInterceptor
from jobtask.server.auth import AuthInterceptor, method_rules
from jobtask.server.callers import CallerResolver
from jobtask.server.changes import ChangeSignal
from jobtask.server.jobs import JobServicer
from jobtask.server.readiness import StoreHealthServicer
from jobtask.server.run_task import RunTasks
from jobtask.server.tasks import TaskServicer
from jobtask.server.tokens import TokenServicer
from jobtask.server.watch import Watcher
from jobtask.store import migrate
from jobtask.store.database import Database
from jobtask.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    task_service_pb2,
    task_service_pb2_grpc,
)

log = logging.getLogger(__name__)

JOB_SERVICE = job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
TASK_SERVICE = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name
# auth (issue 5): API tokens, served by the JobService process.
AUTH_SERVICE = auth_service_pb2.DESCRIPTOR.services_by_name[
    "ApiClientAuthorizationService"
].full_name
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DEFAULT_SAFETY_WAIT = 1.0
# How long each step of a shutdown may take before it is given up on.
STOP_STEP_SECONDS = 10.0


@dataclass
class Core:
    """What both services share in one process: the store, the managers, the feed signal."""

    db: Database
    settings: Settings
    signal: ChangeSignal
    jobs: JobManager
    tasks: TaskManager
    claims: ClaimManager
    callers: CallerResolver
    watcher: Watcher
    # The worker streams (RunTask) of this process.
    runs: RunTasks
    # auth (issue 5): verifies tokens; the interceptor checks every jobtask call with it.
    tokens: TokenManager
    auth: AuthInterceptor
    # observability (issue 18): access logs and RPC metrics, outside auth.
    access: AccessInterceptor = field(default_factory=AccessInterceptor)
    # What opening did to the schema (None: not migrated here); the CLI says it once the
    # process serves (a start that fails says only why).
    schema: migrate.Upgraded | None = None

    @property
    def interceptors(self) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
        return [self.access, self.auth]

    @classmethod
    async def open(
        cls,
        database_url: str,
        settings: Settings,
        *,
        migrate_schema: bool = True,
        root_token: str | None = None,
        safety_wait: float = DEFAULT_SAFETY_WAIT,
    ) -> Core:
        db = Database(database_url)
        schema = None
        try:
            if migrate_schema:
                # A server brings an older schema (or none) to its own revision before it
                # serves; a newer one's it refuses (UnknownRevision).
                schema = await migrate.upgrade(db)
            await db.warm()
        except BaseException:
            await db.dispose()
            raise
        signal = ChangeSignal(max_wait=safety_wait)
        db.on_commit(signal.notify)
        tasks = TaskManager(db, settings)
        tokens = TokenManager(db, settings, root_token)
        rules = method_rules([job_service_pb2, task_service_pb2, auth_service_pb2])
        return cls(
            db=db,
            settings=settings,
            signal=signal,
            jobs=JobManager(db, settings),
            tasks=tasks,
            claims=ClaimManager(db, settings),
            callers=CallerResolver(db, settings),
            watcher=Watcher(db, signal),
            runs=RunTasks(ReportManager(db, settings), signal, settings),
            tokens=tokens,
            auth=AuthInterceptor(tokens, rules),
            schema=schema,
        )


def _new_server(core: Core, names: list[str]) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    server = grpc.aio.server(
        interceptors=core.interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Idle gateway connections must not be dropped between requests (Funnel's lesson).
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            # gRPC's default SO_REUSEPORT lets a second `jobtask up` bind the same port and
            # take half the calls to its own database: a port in use must be an error.
            ("grpc.so_reuseport", 0),
            # Clients ping every 20 s (jobtask.sdk.transport); accept that, and ping them
            # too, so a vanished client's streams end instead of waiting forever.
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
        ],
    )
    health_servicer = StoreHealthServicer(core.db)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    return server, health_servicer


def server_credentials(
    cert_file: str | None, key_file: str | None
) -> grpc.ServerCredentials | None:
    """TLS for the services when both PEM files are given ($JOBTASK_GRPC_TLS_CERT and
    $JOBTASK_GRPC_TLS_KEY); None (cleartext) when neither is."""
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        raise ValueError("gRPC TLS needs both a certificate and its key")
    pair = (Path(key_file).read_bytes(), Path(cert_file).read_bytes())
    return grpc.ssl_server_credentials([pair])


def _bind(server: grpc.aio.Server, listen: str, credentials: grpc.ServerCredentials | None) -> int:
    try:
        if credentials is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, credentials)
    except RuntimeError:  # grpcio's "Failed to bind to address"
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {listen}: the address is in use or not available")
    return port


def create_job_server(
    core: Core, listen: str, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int, Any]:
    server, health_servicer = _new_server(core, [JOB_SERVICE, AUTH_SERVICE])
    # The generated registration functions are untyped.
    job_service_pb2_grpc.add_JobServiceServicer_to_server(  # type: ignore[no-untyped-call]
        JobServicer(core.jobs, core.callers, core.watcher), server
    )
    auth_service_pb2_grpc.add_ApiClientAuthorizationServiceServicer_to_server(  # type: ignore[no-untyped-call]
        TokenServicer(core.tokens), server
    )
    return server, _bind(server, listen, credentials), health_servicer


def create_task_server(
    core: Core, listen: str, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int, Any]:
    server, health_servicer = _new_server(core, [TASK_SERVICE])
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(  # type: ignore[no-untyped-call]
        TaskServicer(
            core.tasks, core.claims, core.callers, core.watcher, core.signal, runs=core.runs
        ),
        server,
    )
    return server, _bind(server, listen, credentials), health_servicer


@dataclass
class Services:
    core: Core
    servers: list[grpc.aio.Server]
    jobs_port: int = 0
    tasks_port: int = 0
    background: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self, grace: float = 1.0) -> None:
        """Stops everything, each step bounded: a shutdown must end even when a database
        call cannot (a canceled asyncpg operation has been seen to hang its connection)."""
        # Worker streams cut by the shutdown keep their leases (see jobtask.server.run_task).
        self.core.runs.closing = True
        for task in self.background:
            task.cancel()
        if self.background:
            _, stuck = await asyncio.wait(self.background, timeout=STOP_STEP_SECONDS)
            if stuck:
                log.warning("stopping: %d background task(s) did not end", len(stuck))
        await asyncio.gather(*(s.stop(grace) for s in self.servers))
        await _bounded(self.core.runs.drain, "the worker streams' cleanups")
        await _bounded(self.core.db.dispose, "the database pool")

    async def wait(self) -> None:
        await asyncio.gather(*(s.wait_for_termination() for s in self.servers))


async def _bounded(step: Callable[[], Awaitable[None]], what: str) -> None:
    try:
        await asyncio.wait_for(step(), STOP_STEP_SECONDS)
    except TimeoutError:
        log.warning("stopping: %s did not end within %ss", what, STOP_STEP_SECONDS)


async def serve(
    database_url: str,
    *,
    jobs_listen: str | None = "127.0.0.1:0",
    tasks_listen: str | None = "127.0.0.1:0",
    cluster_id: str = "zzzzz",
    lease_ttl: float = 30.0,
    retry_limit: int = 3,
    retry_backoff_base: float = DEFAULT_BACKOFF_BASE,
    retry_backoff_max: float = DEFAULT_BACKOFF_MAX,
    blocklist_threshold: int = DEFAULT_BLOCKLIST_THRESHOLD,
    fair_share: bool = True,
    worker_retention: float = DEFAULT_WORKER_RETENTION.total_seconds(),
    root_token: str | None = None,
    feed_keep_seconds: float = 24 * 3600.0,
    feed_keep_events: int = 100_000,
    prune_interval: float = upkeep.PRUNE_SECONDS,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    safety_wait: float = DEFAULT_SAFETY_WAIT,
) -> Services:
    """Starts JobService and/or TaskService (None skips one) on one store; with TLS when
    tls_cert and tls_key (PEM files) are given.

    safety_wait: the longest a waiting stream or claim sleeps without a change signal, in
    case a notification was lost. Tests set it far away to show a wake-up was signalled.

    worker_retention: seconds a stopped or lost worker stays in the registry unseen (the
    TaskService's upkeep prunes it every prune_interval).

    root_token: the system root token (JOBTASK_SYSTEM_ROOT_TOKEN), accepted as the system
    user with every scope. Tokens stored in the database work with or without it."""
    settings = Settings(
        cluster_id=cluster_id,
        retry_limit=retry_limit,
        backoff=Backoff(retry_backoff_base, retry_backoff_max),
        blocklist_threshold=blocklist_threshold,
        fair_share=fair_share,
        lease_ttl=dt.timedelta(seconds=lease_ttl),
        feed_keep=dt.timedelta(seconds=feed_keep_seconds),
        feed_keep_events=feed_keep_events,
        worker_retention=dt.timedelta(seconds=worker_retention),
    )
    credentials = server_credentials(tls_cert, tls_key)
    core = await Core.open(database_url, settings, root_token=root_token, safety_wait=safety_wait)
    services = Services(core=core, servers=[])
    if jobs_listen is not None:
        server, services.jobs_port, health_servicer = create_job_server(
            core, jobs_listen, credentials
        )
        await server.start()
        await health_servicer.set(JOB_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        services.servers.append(server)
    if tasks_listen is not None:
        server, services.tasks_port, health_servicer = create_task_server(
            core, tasks_listen, credentials
        )
        await server.start()
        await health_servicer.set(TASK_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        services.servers.append(server)
    services.background.extend(
        upkeep.start(
            core.db,
            settings,
            core.signal,
            core.claims,
            reaper=tasks_listen is not None,
            prune_interval=prune_interval,
        )
    )
    return services


async def serve_all(
    database_url: str,
    *,
    jobs_listen: str = "127.0.0.1:0",
    tasks_listen: str = "127.0.0.1:0",
    cluster_id: str = "zzzzz",
    root_token: str | None = None,
    **options: Any,
) -> Services:
    """Both services in this process on one store (`jobtask up`, tests)."""
    return await serve(
        database_url,
        jobs_listen=jobs_listen,
        tasks_listen=tasks_listen,
        cluster_id=cluster_id,
        root_token=root_token,
        **options,
    )
