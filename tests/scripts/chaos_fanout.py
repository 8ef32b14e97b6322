#!/usr/bin/env python3
"""Creates N child tasks of the running task (argv[1]) at its sequence + 1, a few calls at
a time, with the task's own token; appends `spawn <parent> <child> <attempt>` to
$JOB_PARAMETER_RUNLOG for each child the server acknowledged, and reports progress after
each batch (each report renews the lease and is recorded in the change feed: the history
checker proves the run ended inside its lease from those records). A call that finds no
server is retried for a minute (the chaos cells take servers and the database away), so a
fault does not fail the task; a creation whose answer was lost may leave an extra child,
which is not a loss."""

import asyncio
import os
import sys
import time

from jobtask.sdk import AsyncClient
from jobtask.sdk.errors import AbortedError, DeadlineExceededError, UnavailableError

AT_ONCE = 16
PATIENCE = 60.0


async def create(client: AsyncClient, sequence: int, n: int) -> str:
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            return (await client.create_child_task({"n": n}, sequence=sequence)).uuid
        except (UnavailableError, DeadlineExceededError, AbortedError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def main() -> None:
    children = int(sys.argv[1])
    parent = os.environ["TASK_UUID"]
    attempt = os.environ["TASK_ATTEMPT"]
    sequence = int(os.environ["TASK_SEQUENCE"]) + 1
    runlog = os.environ["JOB_PARAMETER_RUNLOG"]
    report_fd = int(os.environ["JOBTASK_REPORT_FD"])
    async with AsyncClient.connect() as client:
        pending = list(range(children))
        while pending:
            batch, pending = pending[:AT_ONCE], pending[AT_ONCE:]
            uuids = await asyncio.gather(*(create(client, sequence, n) for n in batch))
            lines = "".join(f"spawn {parent} {uuid} {attempt}\n" for uuid in uuids)
            with open(runlog, "a") as log:  # noqa: ASYNC230 (one short append)
                log.write(lines)
            done = children - len(pending)
            os.write(report_fd, f"progress {0.4 * done / children:.3f}\n".encode())


asyncio.run(main())
