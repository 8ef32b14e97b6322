"""The commands for people: submit, get, list, queue, cancel, requeue, pause, resume, tasks,
logs. Each prints short lines, or with --json the messages as JSON (proto field names)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jobtask.cli import render
from jobtask.sdk.client import AsyncClient
from jobtask.sdk.errors import JobtaskError
from jobtask.sdk.watch import OnBreak
from jobtask.v1 import watch_pb2

TASK_INFIX = "-ot0gb-"


def parse_value(text: str) -> Any:
    """`3` is a number and `[1,2]` a list (JSON); anything that is not JSON is a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def key_values(pairs: list[str] | None, what: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} must look like key=value, not {pair!r}")
        result[key] = parse_value(value)
    return result


def whole_numbers(pairs: dict[str, Any], what: str) -> dict[str, int]:
    """Runtime constraints are whole numbers: say which flag and key when one is not."""
    for key, value in pairs.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{what} {key}={value!r}: the value must be a whole number")
    return pairs


def json_flag(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{flag}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


def add_commands(sub: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("submit", parents=[common], help="submit a job")
    p.add_argument("script", help="the script each task runs (a file in the scripts directory)")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="a script parameter (VALUE is parsed as JSON when it is JSON); repeatable",
    )
    p.add_argument("--parameters", metavar="JSON", help="all script parameters as a JSON object")
    p.add_argument("--version", default="", help="script_version")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument(
        "-c",
        "--constraint",
        action="append",
        metavar="KEY=N",
        help="a runtime constraint (min_nodes, max_nodes, max_tasks_per_node, "
        "min_ram_per_task, min_ram_per_node; KiB for RAM) or a scheduling key "
        "(retry_backoff_base_seconds, retry_backoff_max_seconds, blocklist_threshold); "
        "repeatable",
    )
    p.add_argument("--submit-id", help="makes the submission idempotent")
    p.add_argument(
        "--allow-duplicate",
        action="store_true",
        help="submit even if an identical job exists and has not failed",
    )
    p.set_defaults(run=submit)

    p = sub.add_parser("get", parents=[common], help="show a job or a task")
    p.add_argument("uuid")
    p.set_defaults(run=get)

    for name, helptext in (("list", "list jobs"), ("queue", "list queued jobs, in queue order")):
        p = sub.add_parser(name, parents=[common], help=helptext)
        p.add_argument(
            "-f",
            "--filter",
            nargs=3,
            action="append",
            metavar=("ATTR", "OP", "VALUE"),
            help="an Arvados filter, e.g. -f status = queued (VALUE parsed as JSON when it is)",
        )
        p.add_argument("--filters", metavar="JSON", help="Arvados filters as a JSON list")
        p.add_argument("--limit", type=int)
        p.add_argument("--offset", type=int)
        if name == "list":
            p.add_argument("--order", action="append", help='e.g. "created_at desc"; repeatable')
        p.set_defaults(run=list_jobs, queued=name == "queue")

    for verb in ("cancel", "requeue", "pause", "resume"):
        p = sub.add_parser(verb, parents=[common], help=f"{verb} jobs")
        p.add_argument("uuids", nargs="+", metavar="uuid")
        p.set_defaults(run=change_status, verb=verb)

    p = sub.add_parser("tasks", parents=[common], help="list a job's tasks")
    p.add_argument("job_uuid")
    p.set_defaults(run=tasks)

    p = sub.add_parser("logs", parents=[common], help="print the log of a job's tasks or a task")
    p.add_argument("uuid", help="a job uuid (all its tasks) or a task uuid")
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new log text until the job ends"
    )
    p.set_defaults(run=logs)


def say_break(client: AsyncClient) -> OnBreak:
    """For commands that follow a stream: say on stderr when it breaks and when it is back,
    rather than falling silent while the SDK reconnects."""

    def said(error: JobtaskError | None) -> None:
        if error is None:
            print("jobtask: reconnected", file=sys.stderr, flush=True)
            return
        config = client.config
        print(
            f"jobtask: lost the jobtask services (jobs {config.jobs_addr}, tasks "
            f"{config.tasks_addr}): {error}; reconnecting",
            file=sys.stderr,
            flush=True,
        )

    return said


def _filters(args: argparse.Namespace) -> list[list[Any]]:
    result: list[list[Any]] = []
    if args.filters:
        loaded = json_flag(args.filters, "--filters")
        if not isinstance(loaded, list):
            raise ValueError("--filters must be a JSON list of [attribute, operator, operand]")
        result.extend(loaded)
    for attr, op, value in args.filter or []:
        result.append([attr, op, parse_value(value)])
    return result


async def submit(args: argparse.Namespace, client: AsyncClient) -> int:
    parameters = json_flag(args.parameters, "--parameters") if args.parameters else {}
    if not isinstance(parameters, dict):
        raise ValueError("--parameters must be a JSON object")
    parameters.update(key_values(args.param, "--param"))
    job = await client.submit(
        args.script,
        parameters,
        version=args.version,
        priority=args.priority,
        constraints=whole_numbers(key_values(args.constraint, "--constraint"), "--constraint"),
        submit_id=args.submit_id,
        allow_duplicate=args.allow_duplicate,
    )
    if args.json:
        render.print_json(job)
    else:
        print(job.uuid)
    return 0


async def get(args: argparse.Namespace, client: AsyncClient) -> int:
    if TASK_INFIX in args.uuid:
        task = await client.get_task(args.uuid)
        if args.json:
            render.print_json(task)
        else:
            print("\n".join(render.task_detail(task)))
        return 0
    job = await client.get(args.uuid)
    if args.json:
        render.print_json(job)
    else:
        print("\n".join(render.job_detail(job)))
    return 0


async def list_jobs(args: argparse.Namespace, client: AsyncClient) -> int:
    if args.queued:
        response = await client.queue(_filters(args), limit=args.limit, offset=args.offset)
    else:
        response = await client.list(
            _filters(args), order=args.order, limit=args.limit, offset=args.offset
        )
    if args.json:
        render.print_json(response)
    else:
        print("\n".join(render.job_rows(response.items)))
    return 0


async def change_status(args: argparse.Namespace, client: AsyncClient) -> int:
    verb = getattr(client, args.verb)
    jobs = [await verb(uuid) for uuid in args.uuids]
    if args.json:
        render.print_json(jobs[0] if len(jobs) == 1 else jobs)
    else:
        for job in jobs:
            print(f"{job.uuid} {render.job_status(job.status)}")
    return 0


async def tasks(args: argparse.Namespace, client: AsyncClient) -> int:
    found = await client.tasks(args.job_uuid)
    if not found:
        await client.get(args.job_uuid)  # a job that does not exist is NOT_FOUND, not no tasks
    if args.json:
        render.print_json(found)
    else:
        print("\n".join(render.task_rows(found)))
    return 0


def _print_log(task_uuid: str, header: str, text: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"task_uuid": task_uuid, "log": text}), flush=True)
        return
    if header:
        sys.stdout.write(f"==> task {task_uuid} ({header}) <==\n")
    sys.stdout.write(text)
    if header and text and not text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


async def logs(args: argparse.Namespace, client: AsyncClient) -> int:
    task_uuid = args.uuid if TASK_INFIX in args.uuid else None
    if not args.follow:
        if task_uuid:
            chosen = [await client.get_task(task_uuid)]
        else:
            chosen = await client.tasks(args.uuid)
        for task in chosen:
            _print_log(task.uuid, f"sequence {task.sequence}", task.log, args.json)
        return 0
    # The watch's snapshot holds the logs so far and its events the rest: nothing is
    # missed or printed twice between the two.
    job_uuid = (await client.get_task(task_uuid)).job_uuid if task_uuid else args.uuid
    async for event in client.watch(job_uuid, task_uuid=task_uuid, on_break=say_break(client)):
        if event.type == watch_pb2.WATCH_EVENT_TYPE_SNAPSHOT:
            for task in event.tasks:
                _print_log(task.uuid, f"sequence {task.sequence}", task.log, args.json)
        elif event.type == watch_pb2.WATCH_EVENT_TYPE_TASK_LOG:
            _print_log(event.task_uuid, "", event.log, args.json)
    return 0
