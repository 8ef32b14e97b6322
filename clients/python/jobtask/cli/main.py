"""`jobtask`: run the system (up, serve, db, token, worker, health) and use it (submit, get,
list, queue, watch, cancel, requeue, pause, resume, tasks, logs, workers).

Flags win over JOBTASK_* environment variables, which win over the defaults. Errors print
one line on stderr and exit non-zero: 1 for a failed call, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobtask.cli import (
    GRPC_VERBOSITY_SET,
    completion,
    health,
    jobs,
    schema,
    servers,
    watching,
    worker,
    workers,
)
from jobtask.cli.tokens import add_token_commands
from jobtask.domain.errors import DomainError
from jobtask.event_loop import run
from jobtask.observability.logs import FORMATS, configure
from jobtask.sdk.client import AsyncClient
from jobtask.sdk.errors import (
    InvalidArgumentError,
    JobtaskError,
    UnauthenticatedError,
    UnavailableError,
)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # (not subscriptable at run time)
    _SubParsers = argparse._SubParsersAction


class _Commands(_SubParsers):
    """A command's subparsers that add up -v given before and after the command.

    argparse parses a command's arguments into a namespace of their own and copies all of it
    over the caller's: a command's -v count would replace the count given before it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        before = vars(namespace).pop("verbose", 0)
        super().__call__(parser, namespace, values, option_string)
        namespace.verbose = before + getattr(namespace, "verbose", 0)


class _Parser(argparse.ArgumentParser):
    """`jobtask`'s parser and its commands' (theirs are made by this class too, whoever adds
    them): each takes -v and --log-format, so they may come before or after the command.
    Their defaults are suppressed, so that a command leaves what was given before it alone:
    the later --log-format wins, and the counts of -v add up (_Commands)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Commands)
        self.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=argparse.SUPPRESS,
            help="more log output (-vvv: gRPC's own)",
        )
        self.add_argument(
            "--log-format",
            choices=FORMATS,
            default=argparse.SUPPRESS,
            help="$JOBTASK_LOG_FORMAT: text (default) or json",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jobtask", description="A job and task dispatcher with the Arvados Jobs API."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--jobs-addr", help="JobService host:port ($JOBTASK_JOBS_ADDR)")
    client.add_argument("--tasks-addr", help="TaskService host:port ($JOBTASK_TASKS_ADDR)")
    client.add_argument("--token", help="API token ($JOBTASK_TOKEN)")
    people = argparse.ArgumentParser(add_help=False, parents=[client])
    people.add_argument("--json", action="store_true", help="print JSON (proto field names)")
    people.add_argument("--timeout", type=float, help="seconds per call (default: none)")

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    servers.add_commands(sub)
    schema.add_command(sub)
    health.add_command(sub)
    add_token_commands(sub)
    worker.add_command(sub, client)
    jobs.add_commands(sub, people)
    watching.add_command(sub, people)
    completion.add_command(sub, parser)
    workers.add_command(sub, people)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("jobtask")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def _with_client(args: argparse.Namespace) -> int:
    client = AsyncClient.connect(args.jobs_addr, args.tasks_addr, args.token, timeout=args.timeout)
    async with client:
        try:
            code: int = await args.run(args, client)
        except UnavailableError as exc:
            config = client.config
            raise UnavailableError(
                f"cannot reach the jobtask services (jobs {config.jobs_addr}, tasks "
                f"{config.tasks_addr}; is `jobtask up` running?): {exc}",
                status=exc.status,
            ) from None
        return code


def describe(exc: JobtaskError, args: argparse.Namespace | None = None) -> str:
    kind = exc.code.name.lower().replace("_", " ")
    text = f"{kind}: {exc}"
    given = getattr(args, "token", None) or os.environ.get("JOBTASK_TOKEN")
    if isinstance(exc, UnauthenticatedError) and not given:
        text += " (no token given: set $JOBTASK_TOKEN or pass --token)"
    return text


def _database_errors() -> tuple[type[BaseException], ...]:
    """What a database (or its driver) raises that the store did not translate: a server
    command failing to connect, say. Imported only once something failed."""
    import asyncpg  # type: ignore[import-untyped]  # no stubs published
    from sqlalchemy.exc import DBAPIError

    return (DBAPIError, asyncpg.PostgresError, asyncpg.InterfaceError)


def describe_database_error(exc: BaseException, args: argparse.Namespace) -> str:
    """One line: the driver's first line (which never quotes the password), and the
    database's URL with its password hidden."""
    cause = getattr(exc, "orig", None) or exc
    lines = [line for line in str(cause).splitlines() if line.strip()]
    text = lines[0] if lines else type(cause).__name__
    if not hasattr(args, "database_url"):
        return f"database error: {text}"
    url = servers.shown_url(servers.database_url(args.database_url))
    return f"database error ({url}): {text}"


def _describe_os_error(exc: OSError, args: argparse.Namespace) -> str:
    """A command that opens a database and cannot connect to its server (refused, timed out:
    the driver raises these unwrapped) says so as a database error, naming the database."""
    if isinstance(exc, ConnectionError | TimeoutError) and hasattr(args, "database_url"):
        return describe_database_error(exc, args)
    return f"error: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    if GRPC_VERBOSITY_SET and "grpc" in sys.modules:
        os.environ.pop("GRPC_VERBOSITY", None)  # read by now (see jobtask.cli)
    parser = build_parser()
    args = parser.parse_args(servers.part_first(list(sys.argv[1:] if argv is None else argv)))
    try:
        configure(
            logging.DEBUG if args.verbose > 1 else logging.INFO, getattr(args, "log_format", None)
        )
    except ValueError as exc:
        print(f"jobtask: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.verbose == 0 and getattr(args, "run", None) is not None:
        logging.getLogger().setLevel(logging.WARNING)
    if args.verbose < 2:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if getattr(args, "run_server", None) is not None:
            return int(run(args.run_server(args)))
        return run(_with_client(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `jobtask list | head -1`: the reader has what it wanted. Quiet, and no second
        # error when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except JobtaskError as exc:
        if isinstance(exc, InvalidArgumentError) and exc.status is None and exc.field:
            # Refused by the SDK itself, before any call (a server's refusal comes with its
            # status): bad usage, as the command line's own checks of the same flags.
            print(f"jobtask: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"jobtask: {describe(exc, args)}", file=sys.stderr)
        return EXIT_FAILED
    except DomainError as exc:
        # Raised in this process, by the store (a schema upgrade it refuses, for one).
        print(f"jobtask: error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except _database_errors() as exc:
        print(f"jobtask: {describe_database_error(exc, args)}", file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"jobtask: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"jobtask: {_describe_os_error(exc, args)}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
