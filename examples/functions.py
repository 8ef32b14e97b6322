"""Task functions for `jobtask worker --functions examples.functions:functions`
(see clients/python/jobtask/worker/README.md, "Tasks as Python functions").

    jobtask submit shout --parameters '{"words": ["alpha", "beta"]}'
"""

from __future__ import annotations

from jobtask.worker import Functions, TaskContext

functions = Functions()


@functions.task("shout")
async def shout(ctx: TaskContext) -> str | None:
    """The job's first task creates one child per word; each child shouts its word."""
    if "word" not in ctx.parameters:
        # One child per word, all in one call (BatchCreateTasks).
        await ctx.create_child_tasks([{"word": w} for w in ctx.job_parameters["words"]])
        return None
    ctx.progress(0.5)
    return str(ctx.parameters["word"]).upper() + "\n"


@functions.task("count")
def count(ctx: TaskContext) -> str:
    """A plain function: it runs in the worker's thread pool."""
    return f"{len(ctx.job_parameters['words'])}\n"


@functions.task("noop")
async def noop(ctx: TaskContext) -> None:
    """Does nothing and completes (what bench/ runs by the ten thousand)."""
