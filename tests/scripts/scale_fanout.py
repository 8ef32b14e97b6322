#!/usr/bin/env python3
"""The seed task of a scale-test job (run by scale_task at sequence 0): creates
JOB_PARAMETER_CHILDREN tasks at sequence 1, a few calls at a time, with the task's own
token, then completes through the API."""

import asyncio
import os

from jobtask.sdk import AsyncClient

AT_ONCE = 16


async def main() -> None:
    children = int(os.environ["JOB_PARAMETER_CHILDREN"])
    async with AsyncClient.connect() as client:
        pending = list(range(children))
        while pending:
            batch, pending = pending[:AT_ONCE], pending[AT_ONCE:]
            await asyncio.gather(*(client.create_child_task({"n": n}) for n in batch))
        print(f"created {children} child tasks")
        await client.set_output("")  # progress 1, success true


asyncio.run(main())
