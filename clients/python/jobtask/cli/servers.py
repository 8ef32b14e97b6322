"""Running the system: `jobtask up` (everything in one process on a SQLite file) and
`jobtask serve jobs|tasks|gateway` (one part per process); the database URL as given and as
shown. (`jobtask db` is jobtask.cli.schema.)"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import math
import os
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

log = logging.getLogger("jobtask")

PARTS = ("jobs", "tasks", "gateway")
# `jobtask`'s own flags that may come before its command: without a value, and with one.
_GLOBAL_FLAGS = {"-v", "--verbose", "-vv", "-vvv"}
_GLOBAL_WITH_VALUE = {"--log-format"}


def part_first(argv: list[str]) -> list[str]:
    """argv with `serve`'s part name moved to just after `serve` when flags came before it
    (`jobtask serve --jobs-listen X jobs`, the order deployments used while every part's
    flags were serve's own): each part now parses only its own flags, after its name.
    Anything else is left as it is, for argparse to answer."""
    i = 0
    while i < len(argv) and argv[i] != "serve":
        if argv[i] in _GLOBAL_WITH_VALUE or argv[i].startswith("--log-format="):
            i += 1 if "=" in argv[i] else 2
        elif argv[i] in _GLOBAL_FLAGS:
            i += 1
        else:
            return argv  # another command (or none): not serve's business
    start = i + 1
    if i >= len(argv) or start >= len(argv) or not argv[start].startswith("-"):
        return argv
    if argv[start] in ("-h", "--help"):
        return argv
    for k in range(start + 1, len(argv)):
        if argv[k] == "--":
            break
        if argv[k] in PARTS:
            return [*argv[:start], argv[k], *argv[start:k], *argv[k + 1 :]]
    return argv


DEFAULT_JOBS_LISTEN = "127.0.0.1:50051"
DEFAULT_TASKS_LISTEN = "127.0.0.1:50052"
DEFAULT_GATEWAY_LISTEN = "127.0.0.1:8000"
DEFAULT_SQLITE = "jobtask.sqlite3"
# The services' scheduling defaults (jobtask.domain.scheduling), spelled here so the CLI
# module loads without the services.
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_MAX = 60.0
DEFAULT_BLOCKLIST_THRESHOLD = 3
DEFAULT_LEASE_TTL = 30.0
DEFAULT_WORKER_RETENTION = 7 * 24 * 3600.0  # (jobtask.manager.context's, in seconds)


def database_url(given: str | None) -> str:
    """A URL, or a plain file path meaning a SQLite file."""
    value = given or os.environ.get("JOBTASK_DATABASE_URL") or DEFAULT_SQLITE
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().absolute()}"


def shown_url(url: str) -> str:
    """`url` as the CLI prints it: with its password hidden (`***`), as the store's messages
    show it (jobtask.store.database.shown_url)."""
    from jobtask.store.database import shown_url as shown

    return shown(url)


def existing_database(url: str) -> str:
    """`url`, once sure it names a database that exists: commands that only read or change
    records (token) must not leave a new, empty SQLite file wherever they were run."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not Path(url.removeprefix(prefix).split("?")[0]).exists():
        raise ValueError(
            f"no database at {url}: run this where `jobtask up` keeps its database, or name it "
            "with --database-url / $JOBTASK_DATABASE_URL (`jobtask db upgrade` creates one)"
        )
    return url


def _attempts(text: str) -> int:
    """--retry-limit: attempts a task gets, at least 1 (1: no retries; the services refuse 0)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, at least 1, not {text}")
    return value


def _seconds(text: str) -> float:
    """--lease-ttl: a lease of 0 seconds expires as it is granted; --worker-retention: a
    worker kept 0 seconds would be forgotten as it stops."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


def _seconds_setting(given: float | None, variable: str, default: float) -> float:
    """A --flag of seconds (checked as parsed), else its $variable, held to the same rule."""
    if given is not None:
        return given
    raw = _env(variable, str(default))
    try:
        return _seconds(raw)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"${variable} {exc}") from None


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _flags() -> argparse.ArgumentParser:
    """A group of flags to give a command as a parent."""
    return argparse.ArgumentParser(add_help=False)


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    # The flags by the part they configure: `up` takes all of them, `serve PART` its part's.
    service = _flags()
    service.add_argument("--database-url", help="$JOBTASK_DATABASE_URL (default ./jobtask.sqlite3)")
    service.add_argument("--cluster-id", help="$JOBTASK_CLUSTER_ID (default zzzzz)")
    service.add_argument(
        "--grpc-tls-cert", help="$JOBTASK_GRPC_TLS_CERT (TLS for JobService and TaskService)"
    )
    service.add_argument("--grpc-tls-key", help="$JOBTASK_GRPC_TLS_KEY")
    jobs = _flags()
    jobs.add_argument("--jobs-listen", help=f"$JOBTASK_JOBS_LISTEN ({DEFAULT_JOBS_LISTEN})")
    tasks = _flags()
    tasks.add_argument("--tasks-listen", help=f"$JOBTASK_TASKS_LISTEN ({DEFAULT_TASKS_LISTEN})")
    metrics = _flags()
    metrics.add_argument(
        "--metrics-listen",
        help="$JOBTASK_METRICS_LISTEN host:port for Prometheus's GET /metrics (default: off)",
    )
    # Also a JobService's: its metrics count workers seen within two leases as live.
    lease = _flags()
    lease.add_argument("--lease-ttl", type=_seconds, help="$JOBTASK_LEASE_TTL seconds (30)")
    scheduling = _flags()
    scheduling.add_argument(
        "--retry-limit", type=_attempts, help="$JOBTASK_RETRY_LIMIT: attempts per task (3)"
    )
    scheduling.add_argument(
        "--retry-backoff-base",
        type=float,
        help="$JOBTASK_RETRY_BACKOFF_BASE: first retry waits up to this many seconds (1; 0: none)",
    )
    scheduling.add_argument(
        "--retry-backoff-max",
        type=float,
        help="$JOBTASK_RETRY_BACKOFF_MAX: longest wait before a retry, seconds (60)",
    )
    scheduling.add_argument(
        "--blocklist-threshold",
        type=int,
        help="$JOBTASK_BLOCKLIST_THRESHOLD: tasks of a job failed before a worker is blocklisted "
        "(3; 0: off)",
    )
    scheduling.add_argument(
        "--worker-retention",
        type=_seconds,
        help="$JOBTASK_WORKER_RETENTION: TaskService forgets a stopped or lost worker not seen "
        "for this many seconds (604800: 7 days)",
    )
    scheduling.add_argument(
        "--no-fair-share",
        action="store_true",
        help="$JOBTASK_FAIR_SHARE=0: serve equal priorities strictly by arrival, not by owner",
    )
    gateway = _flags()
    gateway.add_argument(
        "--gateway-listen", help=f"$JOBTASK_GATEWAY_LISTEN ({DEFAULT_GATEWAY_LISTEN})"
    )
    gateway.add_argument(
        "--gateway-header-timeout",
        type=float,
        help="$JOBTASK_GATEWAY_HEADER_TIMEOUT: seconds a client has to send a request header (10)",
    )
    gateway.add_argument(
        "--gateway-idle-timeout",
        type=int,
        help="$JOBTASK_GATEWAY_IDLE_TIMEOUT: seconds a kept-alive connection may idle (5)",
    )
    gateway.add_argument(
        "--gateway-max-connections",
        type=int,
        help="$JOBTASK_GATEWAY_MAX_CONNECTIONS: connections the gateway holds at once"
        " (1000, at most half the descriptor limit); more are closed at once",
    )
    gateway.add_argument("--tls-cert", help="$JOBTASK_TLS_CERT (gateway HTTPS)")
    gateway.add_argument("--tls-key", help="$JOBTASK_TLS_KEY")
    gateway.add_argument(
        "--tls-ca",
        help="$JOBTASK_TLS_CA: gateway, the CA that signed the services' certificates"
        " (up: the services' own certificate by default)",
    )

    p = sub.add_parser(
        "up",
        parents=[service, jobs, tasks, metrics, lease, scheduling, gateway],
        help="run JobService, TaskService and the gateway in one process",
    )
    p.add_argument("--no-gateway", action="store_true", help="do not start the REST gateway")
    p.set_defaults(run_server=up)

    p = sub.add_parser("serve", help="run one part of the system")
    parts = p.add_subparsers(dest="part", required=True)
    p = parts.add_parser(
        "jobs", parents=[service, jobs, metrics, lease], help="JobService (jobs, tokens, watches)"
    )
    # TaskService's scheduling: not JobService's (its settings keep their defaults).
    p.set_defaults(
        run_server=serve,
        retry_limit=None,
        retry_backoff_base=None,
        retry_backoff_max=None,
        blocklist_threshold=None,
        no_fair_share=False,
        worker_retention=None,
    )
    p = parts.add_parser(
        "tasks",
        parents=[service, tasks, metrics, lease, scheduling],
        help="TaskService (tasks, claims and leases, workers)",
    )
    p.set_defaults(run_server=serve)
    p = parts.add_parser("gateway", parents=[gateway, metrics], help="the REST gateway")
    p.add_argument("--jobs-addr", help="where JobService is ($JOBTASK_JOBS_ADDR)")
    p.add_argument("--tasks-addr", help="where TaskService is ($JOBTASK_TASKS_ADDR)")
    p.set_defaults(run_server=serve)


def _grpc_tls(args: argparse.Namespace) -> tuple[str | None, str | None]:
    return (
        args.grpc_tls_cert or os.environ.get("JOBTASK_GRPC_TLS_CERT") or None,
        args.grpc_tls_key or os.environ.get("JOBTASK_GRPC_TLS_KEY") or None,
    )


def _services_ca(args: argparse.Namespace) -> str | None:
    return args.tls_ca or os.environ.get("JOBTASK_TLS_CA") or None


def _service_options(args: argparse.Namespace) -> dict[str, Any]:
    tls_cert, tls_key = _grpc_tls(args)
    return {
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "root_token": os.environ.get("JOBTASK_SYSTEM_ROOT_TOKEN") or None,
        "cluster_id": args.cluster_id or _env("JOBTASK_CLUSTER_ID", "zzzzz"),
        "lease_ttl": _seconds_setting(args.lease_ttl, "JOBTASK_LEASE_TTL", DEFAULT_LEASE_TTL),
        "retry_limit": (
            args.retry_limit
            if args.retry_limit is not None
            else int(_env("JOBTASK_RETRY_LIMIT", "3"))
        ),
        "retry_backoff_base": _number(
            args.retry_backoff_base, "JOBTASK_RETRY_BACKOFF_BASE", DEFAULT_BACKOFF_BASE
        ),
        "retry_backoff_max": _number(
            args.retry_backoff_max, "JOBTASK_RETRY_BACKOFF_MAX", DEFAULT_BACKOFF_MAX
        ),
        "blocklist_threshold": int(
            _number(
                args.blocklist_threshold, "JOBTASK_BLOCKLIST_THRESHOLD", DEFAULT_BLOCKLIST_THRESHOLD
            )
        ),
        "fair_share": not args.no_fair_share and _env("JOBTASK_FAIR_SHARE", "1") != "0",
        "worker_retention": _seconds_setting(
            args.worker_retention, "JOBTASK_WORKER_RETENTION", DEFAULT_WORKER_RETENTION
        ),
    }


async def _start_metrics(
    args: argparse.Namespace, services: Any | None, parts: tuple[str, ...]
) -> Any | None:
    """The process's Prometheus endpoint, if asked for, with the metrics of the parts it
    runs (jobs, tasks, gateway); its URL is printed."""
    listen = args.metrics_listen or os.environ.get("JOBTASK_METRICS_LISTEN")
    if not listen:
        return None
    from jobtask.observability.collector import CACHE_SECONDS, StoreCollector
    from jobtask.observability.endpoint import serve_metrics

    store = []
    if services is not None:
        cache = float(_env("JOBTASK_METRICS_CACHE_SECONDS", str(CACHE_SECONDS)))
        store.append(
            StoreCollector(
                services.core.db,
                services.core.settings.live_horizon,
                cache_seconds=cache,
                worker_slots="tasks" in parts,
            )
        )
    return await serve_metrics(listen, store, parts)


def _number(given: float | None, variable: str, default: float) -> float:
    """A flag's number, else its environment variable's, else the default (0 is a value)."""
    if given is not None:
        return given
    raw = os.environ.get(variable)
    return default if raw is None or raw == "" else float(raw)


def _gateway_module() -> Any | None:
    try:
        return importlib.import_module("jobtask.gateway.server")
    except ImportError as exc:
        print(f"jobtask: the REST gateway is not available ({exc}); skipping it", file=sys.stderr)
        return None


def _gateway_connections(module: Any, args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        module.connection_options_from_env(
            args.gateway_header_timeout, args.gateway_idle_timeout, args.gateway_max_connections
        )
    )


def _host(listen: str) -> str:
    host = listen.rpartition(":")[0].strip("[]")
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


class Running:
    """Waits on servers' termination. Not canceled early: canceling a grpc.aio server's
    wait_for_termination breaks its later stop() with a CancelledError.

    SIGINT and SIGTERM are caught from its making on: made before "press Ctrl-C to stop" is
    printed, a Ctrl-C (or a supervisor's SIGTERM) right after the line stops the servers
    cleanly instead of killing the process with 130."""

    def __init__(self, *waits: Awaitable[Any]) -> None:
        self.tasks = [asyncio.ensure_future(w) for w in waits]
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, self.stop.set)

    async def until_signalled(self) -> None:
        """Returns on SIGINT or SIGTERM, or when a server ends by itself."""
        from jobtask.collector import freeze_startup_heap
        from jobtask.event_loop import running_loop

        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            freeze_startup_heap()
            log.info("event loop: %s", running_loop())
            await asyncio.wait([stopper, *self.tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.remove_signal_handler(sig)
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper

    async def finish(self) -> None:
        """After the servers were stopped: collects the waits."""
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _root_token(services: Any) -> str | None:
    """A newly generated admin token, once the auth layer provides them."""
    try:
        tokens = importlib.import_module("jobtask.manager.tokens")
    except ImportError:
        return None
    ensure = getattr(tokens, "ensure_root_token", None)
    if ensure is None:
        return None
    token = await ensure(
        services.core.db, services.core.settings, os.environ.get("JOBTASK_SYSTEM_ROOT_TOKEN")
    )
    return str(token) if token else None


async def up(args: argparse.Namespace) -> int:
    from jobtask.server.app import serve_all

    url = database_url(args.database_url)
    jobs_listen = args.jobs_listen or _env("JOBTASK_JOBS_LISTEN", DEFAULT_JOBS_LISTEN)
    tasks_listen = args.tasks_listen or _env("JOBTASK_TASKS_LISTEN", DEFAULT_TASKS_LISTEN)
    services = await serve_all(
        url, jobs_listen=jobs_listen, tasks_listen=tasks_listen, **_service_options(args)
    )
    jobs_addr = f"{_host(jobs_listen)}:{services.jobs_port}"
    tasks_addr = f"{_host(tasks_listen)}:{services.tasks_port}"
    gateway = metrics = None
    try:
        module = None if args.no_gateway else _gateway_module()
        parts = ("jobs", "tasks", *(() if module is None else ("gateway",)))
        metrics = await _start_metrics(args, services, parts)
        if module is not None:
            gateway = await module.serve_gateway(
                args.gateway_listen or _env("JOBTASK_GATEWAY_LISTEN", DEFAULT_GATEWAY_LISTEN),
                jobs_addr,
                tasks_addr,
                args.tls_cert or os.environ.get("JOBTASK_TLS_CERT"),
                args.tls_key or os.environ.get("JOBTASK_TLS_KEY"),
                # Our own services: a self-signed certificate is its own CA.
                services_ca=_services_ca(args) or _grpc_tls(args)[0],
                **_gateway_connections(module, args),
            )
        print(f"database:    {shown_url(url)}")
        print(f"schema:      {services.core.schema}")
        print(f"JobService:  {jobs_addr}")
        print(f"TaskService: {tasks_addr}")
        if gateway is not None:
            print(f"gateway:     {gateway.url}")
        if metrics is not None:
            print(f"metrics:     {metrics.url}")
        token = await _root_token(services)
        if token:
            print(f"admin token: {token}  (shown once; export JOBTASK_TOKEN={token})")
        running = Running(services.wait(), *([gateway.wait()] if gateway is not None else []))
        print("press Ctrl-C to stop", flush=True)
        await running.until_signalled()
    finally:
        print("stopping", flush=True)
        if metrics is not None:
            await metrics.stop()
        if gateway is not None:
            await gateway.stop()
        await services.stop(2.0)
    await running.finish()
    return 0


async def serve(args: argparse.Namespace) -> int:
    if args.part == "gateway":
        module = _gateway_module()
        if module is None:
            return 1
        gateway = await module.serve_gateway(
            args.gateway_listen or _env("JOBTASK_GATEWAY_LISTEN", DEFAULT_GATEWAY_LISTEN),
            args.jobs_addr or _env("JOBTASK_JOBS_ADDR", DEFAULT_JOBS_LISTEN),
            args.tasks_addr or _env("JOBTASK_TASKS_ADDR", DEFAULT_TASKS_LISTEN),
            args.tls_cert or os.environ.get("JOBTASK_TLS_CERT"),
            args.tls_key or os.environ.get("JOBTASK_TLS_KEY"),
            services_ca=_services_ca(args),
            **_gateway_connections(module, args),
        )
        print(f"gateway: {gateway.url}", flush=True)
        metrics = await _start_metrics(args, None, ("gateway",))
        if metrics is not None:
            print(f"metrics: {metrics.url}", flush=True)
        running = Running(gateway.wait())
        try:
            await running.until_signalled()
        finally:
            if metrics is not None:
                await metrics.stop()
            await gateway.stop()
        await running.finish()
        return 0
    from jobtask.server.app import serve as serve_services

    jobs = args.part == "jobs"
    listen = (
        args.jobs_listen or _env("JOBTASK_JOBS_LISTEN", DEFAULT_JOBS_LISTEN)
        if jobs
        else args.tasks_listen or _env("JOBTASK_TASKS_LISTEN", DEFAULT_TASKS_LISTEN)
    )
    url = database_url(args.database_url)
    services = await serve_services(
        url,
        jobs_listen=listen if jobs else None,
        tasks_listen=None if jobs else listen,
        **_service_options(args),
    )
    port = services.jobs_port if jobs else services.tasks_port
    name = "JobService" if jobs else "TaskService"
    print(f"{name}: {_host(listen)}:{port}", flush=True)
    print(f"database: {shown_url(url)}")
    print(f"schema: {services.core.schema}", flush=True)
    metrics = await _start_metrics(args, services, (args.part,))
    if metrics is not None:
        print(f"metrics: {metrics.url}", flush=True)
    running = Running(services.wait())
    try:
        await running.until_signalled()
    finally:
        if metrics is not None:
            await metrics.stop()
        await services.stop(2.0)
    await running.finish()
    return 0
