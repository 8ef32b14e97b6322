"""The system under test in its own process: JobService and TaskService (`serve_all`) on
one store, and optionally the REST gateway in a second process of its own.

    python -m bench.server DATABASE_URL [--lease-ttl S] [--no-fair-share] [--capture FILE]
        [--holds FILE]

Prints {"jobs": port, "tasks": port, "token": t, "pid": pid} once serving, where `token` is
a stored API token of the system user (what `jobtask token create` gives a worker), then
serves until its standard input closes. With --capture, every SQL statement the server
sends is recorded with its parameters, grouped per transaction, and written to FILE as it
stops (bench.ceiling replays them). With --holds, how long each claim and report group held
its job's row is written to FILE as it stops (bench.holds).
"""

from __future__ import annotations

import argparse
import logging
import os

from jobtask.collector import freeze_startup_heap
from jobtask.event_loop import run
from jobtask.manager.tokens import issue_token
from jobtask.server.app import serve_all

from bench.capture import Capture
from bench.harness import announce, wait_for_stdin_close
from bench.holds import Holds


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--no-fair-share", action="store_true")
    parser.add_argument("--capture")
    parser.add_argument("--holds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    capture = Capture() if args.capture else None
    holds = Holds() if args.holds else None
    services = await serve_all(
        args.database_url,
        root_token="bench-root-" + os.urandom(8).hex(),
        lease_ttl=args.lease_ttl,
        # Long runs must not lose their events to pruning mid-benchmark.
        feed_keep_events=10_000_000,
        fair_share=not args.no_fair_share,
    )
    _, token = await issue_token(services.core.db, services.core.settings)
    # Two plain users' tokens, for benchmarks with several owners (bench.fairshare).
    owners = [
        (
            await issue_token(
                services.core.db, services.core.settings, user_uuid=f"zzzzz-tpzed-{u * 15}"
            )
        )[1]
        for u in ("a", "b")
    ]
    freeze_startup_heap()  # as `jobtask up` does once it serves
    announce(
        jobs=services.jobs_port,
        tasks=services.tasks_port,
        token=token,
        owners=owners,
        pid=os.getpid(),
    )
    try:
        await wait_for_stdin_close()
    finally:
        await services.stop(0.5)
        if capture:
            capture.dump(args.capture)
        if holds:
            holds.dump(args.holds)


if __name__ == "__main__":
    run(main())
