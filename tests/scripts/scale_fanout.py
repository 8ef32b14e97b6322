#!/usr/bin/env python3
"""The seed task of a scale-test job (run by scale_task at sequence 0): creates
JOB_PARAMETER_CHILDREN tasks at sequence 1 with the task's own token, PER_CALL tasks a call
(BatchCreateTasks) and AT_ONCE calls at a time, then completes through the API.

Batches, not one CreateTask call a child: at 2,000 tasks the one-a-call fan-out kept the
workers idle for a quarter of the test (~30 s: no child runs before its seed completes),
while CreateTask itself is exercised by the chaos cells' fan-out (chaos_fanout.py). A few calls
at a time still write one job's rows concurrently."""

import asyncio
import os

from jobtask.sdk import AsyncClient

PER_CALL = 20
AT_ONCE = 4


async def main() -> None:
    children = int(os.environ["JOB_PARAMETER_CHILDREN"])
    calls = [list(range(n, min(n + PER_CALL, children))) for n in range(0, children, PER_CALL)]
    async with AsyncClient.connect() as client:
        while calls:
            wave, calls = calls[:AT_ONCE], calls[AT_ONCE:]
            await asyncio.gather(
                *(client.create_child_tasks([{"n": n} for n in call]) for call in wave)
            )
        print(f"created {children} child tasks")
        await client.set_output("")  # progress 1, success true


asyncio.run(main())
