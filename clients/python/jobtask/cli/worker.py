"""`jobtask worker`: the worker agent in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from jobtask.collector import freeze_startup_heap
from jobtask.event_loop import running_loop
from jobtask.worker import Worker, WorkerConfig, functions

log = logging.getLogger("jobtask")


def add_command(sub: argparse._SubParsersAction[Any], client: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "worker",
        parents=[client],
        help="claim and run tasks (stops gracefully on SIGTERM/SIGINT, handing tasks back)",
    )
    p.add_argument("--slots", type=int, help="tasks run at once ($JOBTASK_WORKER_SLOTS, 1)")
    p.add_argument("--node-name", help="$JOBTASK_NODE_NAME (default: the host name)")
    p.add_argument("--scripts-dir", help="$JOBTASK_SCRIPTS_DIR (default ./crunch_scripts)")
    p.add_argument("--work-dir", help="$JOBTASK_WORK_DIR: base of CRUNCH_TMP (default $TMPDIR)")
    p.add_argument(
        "--gateway-addr", help="$JOBTASK_GATEWAY_ADDR: given to scripts as ARVADOS_API_HOST"
    )
    p.add_argument("--ram-kib", type=int, help="$JOBTASK_WORKER_RAM_KIB (default: detected)")
    p.add_argument("--cores", type=int, help="$JOBTASK_WORKER_CORES (default: detected)")
    p.add_argument("--tags", help="$JOBTASK_WORKER_TAGS, comma-separated")
    p.add_argument("--worker-id", help="$JOBTASK_WORKER_ID (default: node-pid-random)")
    p.add_argument("--claim-wait", type=float, help="long-poll seconds per claim (10)")
    p.add_argument(
        "--pass-env",
        action="append",
        metavar="NAME",
        help="also give tasks this variable of the worker's environment (repeatable; "
        "$JOBTASK_WORKER_PASS_ENV, comma-separated); tokens and the database URL never",
    )
    p.add_argument(
        "--functions",
        metavar="MODULE:ATTR",
        help="$JOBTASK_WORKER_FUNCTIONS: a jobtask.worker.functions.Functions whose "
        "functions run the jobs of their script names in this process",
    )
    p.add_argument(
        "--protocol",
        choices=("session", "stream"),
        help="$JOBTASK_WORKER_PROTOCOL: one WorkerSession (default) or ClaimTask/RunTask",
    )
    p.set_defaults(run_server=run_worker)


async def run_worker(args: argparse.Namespace) -> int:
    config = WorkerConfig.from_env(
        jobs_addr=args.jobs_addr,
        tasks_addr=args.tasks_addr,
        token=args.token,
        slots=args.slots,
        node_name=args.node_name,
        scripts_dir=args.scripts_dir,
        work_root=args.work_dir,
        gateway_addr=args.gateway_addr,
        ram_kib=args.ram_kib,
        cores=args.cores,
        tags=args.tags,
        worker_id=args.worker_id,
        claim_wait=args.claim_wait,
        pass_env=tuple(args.pass_env) if args.pass_env else None,
        protocol=args.protocol,
    )
    spec = args.functions or os.environ.get("JOBTASK_WORKER_FUNCTIONS")
    registry = functions.load(spec) if spec else None
    if registry is None and not config.scripts_dir.is_dir():
        raise ValueError(f"scripts directory {config.scripts_dir} does not exist")
    if registry is not None and not config.scripts_dir.is_dir():
        # Functions only: a script task claimed here fails its attempt (and is retried).
        log.warning(
            "scripts directory %s does not exist: this worker runs its functions only (%s)",
            config.scripts_dir,
            ", ".join(registry.names()) or "none registered",
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("event loop: %s", running_loop())
    print(f"worker {config.worker_id}: {config.slots} slot(s) on {config.node_name}", flush=True)
    freeze_startup_heap()  # (the functions' module is imported by now)
    await Worker(config, registry).run(stop)
    return 0
