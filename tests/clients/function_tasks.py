"""Task functions the worker tests load with `jobtask worker --functions
tests.clients.function_tasks:functions` (see test_function_tasks.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from jobtask.worker import Functions, TaskContext

functions = Functions()


@functions.task("fn_fanout")
async def fanout(ctx: TaskContext) -> str | None:
    """The seed task creates one child per word; each child returns its word in capitals."""
    if "word" in ctx.parameters:
        ctx.progress(0.5)
        return str(ctx.parameters["word"]).upper() + "\n"
    await ctx.create_child_tasks([{"word": word} for word in ctx.job_parameters["words"]])
    return None


@functions.task("fn_sync")
def in_a_thread(ctx: TaskContext) -> str:
    """A plain function: runs in the worker's thread pool."""
    time.sleep(0.05)
    ctx.log("counted in a thread")
    return f"{sum(ctx.job_parameters['numbers'])}\n"


@functions.task("fn_refuse")
async def refuse(ctx: TaskContext) -> None:
    ctx.progress(1.0)
    ctx.success(False)


@functions.task("fn_crash")
async def crash(ctx: TaskContext) -> None:
    raise RuntimeError(f"attempt {ctx.attempt} crashed")


def note(marker: Path, text: str) -> None:
    marker.write_text(text)


@functions.task("fn_wait_for_cancel")
async def wait_for_cancel(ctx: TaskContext) -> None:
    """Reports progress, then waits until canceled and notes that it saw the cancel."""
    marker = Path(ctx.job_parameters["marker"])
    ctx.progress(0.1)
    note(marker, "running")
    await ctx.until_cancelled()
    assert ctx.cancelled
    note(marker, "cancelled")
    await asyncio.sleep(3600)  # cancelled by the worker after its kill grace


@functions.task("fn_own_task")
async def own_task(ctx: TaskContext) -> str:
    """Says whether it runs in an asyncio task of its own, named by its task, in which
    asyncio.timeout() works: the timeout cancels this task's wait, and the cancel is taken
    back (the function goes on, and its task is not left cancelling)."""
    task = asyncio.current_task()
    assert task is not None
    timed_out = False
    try:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(3600)
    except TimeoutError:
        timed_out = True
    await asyncio.sleep(0.01)  # not cancelled again: the timeout's cancel was taken back
    alone = all(t is task or t.get_name() != ctx.task_uuid for t in asyncio.all_tasks())
    same = asyncio.current_task() is task
    named = task.get_name() == ctx.task_uuid and alone
    return f"named {named} same {same} timed out {timed_out} cancelling {task.cancelling()}\n"
