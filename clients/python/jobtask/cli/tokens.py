"""`jobtask token create|list|revoke`: API tokens, managed straight on the database.

Like Arvados's admin tasks, these need database access ($JOBTASK_DATABASE_URL), not a token:
that is how a first user gets a token and how a lost root token is replaced. Secrets are
printed once, at creation, in the `v2/<uuid>/<secret>` form; the database keeps a hash.
A database with no schema yet gets one (as `jobtask up` does); one at another revision than
this jobtask's is refused, untouched, until `jobtask db upgrade` (or the right version) runs.

    jobtask token create                       # an admin token (the system user, all scopes)
    jobtask token create --worker              # a worker token: claim, run, report exits
    jobtask token create --user zzzzz-tpzed-... --scopes "GET /arvados/v1/jobs" --expires 7d
    jobtask token list [--all]
    jobtask token revoke zzzzz-gj3su-...
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the server's modules load only for the commands that open the database
    from jobtask.store.rows import TokenRow

__all__ = ["add_token_commands", "parse_expires", "parse_scopes"]

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expires(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """`30d`, `12h`, `90m`, `3600s`, `2w` from now, or an ISO 8601 time (UTC if no zone)."""
    now = now or dt.datetime.now(dt.UTC)
    found = _DURATION.match(value.strip())
    if found:
        return now + dt.timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--expires {value!r}: give a duration (30d, 12h, 90m) or an ISO 8601 time"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def parse_scopes(values: Sequence[str] | None) -> list[str] | None:
    """`--scopes` entries; one entry that is a JSON list counts as the list itself.
    None: the flag was not given. `--scopes` with no entries: the empty list (no access)."""
    if values is None:
        return None
    if len(values) == 1 and values[0].lstrip().startswith("["):
        parsed = json.loads(values[0])
        if not isinstance(parsed, list) or not all(isinstance(s, str) for s in parsed):
            raise ValueError("--scopes: the JSON value must be a list of strings")
        return parsed
    return list(values)


def add_token_commands(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Adds `token create|list|revoke` to the jobtask command line; they set `run_server`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="$JOBTASK_DATABASE_URL (default ./jobtask.sqlite3)")
    common.add_argument("--cluster-id", help="$JOBTASK_CLUSTER_ID (default zzzzz)")

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "token", help="create, list and revoke API tokens (needs database access)"
    )
    sub = parser.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    p = sub.add_parser("create", parents=[common], help="create a token and print it once")
    p.add_argument(
        "--user",
        help="the user the token acts for (created if missing); default: the system user",
    )
    p.add_argument("--admin", action="store_true", help="make --user an admin")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument(
        "--scopes",
        nargs="*",
        metavar="SCOPE",
        help='"all" (default) or "METHOD /arvados/v1/path" entries, or one JSON list; '
        "no entries: a token that may do nothing",
    )
    kind.add_argument(
        "--worker",
        action="store_true",
        help="a worker token: may claim and run tasks and report their exit, nothing else",
    )
    p.add_argument("--expires", help="a duration (30d, 12h) or an ISO 8601 time; default never")
    p.add_argument("--json", action="store_true", help="print the token record as JSON")
    p.set_defaults(run_server=create)

    p = sub.add_parser("list", parents=[common], help="list tokens (never their secrets)")
    p.add_argument("--all", action="store_true", help="include revoked tokens")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run_server=list_command)

    p = sub.add_parser("revoke", parents=[common], help="revoke a token: it stops working")
    p.add_argument("uuid", help="the token's uuid (<cluster>-gj3su-...)")
    p.set_defaults(run_server=revoke)
    return parser


async def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    from jobtask.cli.servers import database_url, existing_database, shown_url
    from jobtask.manager.context import Settings
    from jobtask.store import migrate
    from jobtask.store.database import Database

    cluster_id = args.cluster_id or os.environ.get("JOBTASK_CLUSTER_ID") or "zzzzz"
    settings = Settings(cluster_id=cluster_id)
    url = existing_database(database_url(args.database_url))
    new = await _new_schema(url, shown_url(url))
    # Said on stderr so that `token create` still prints only the token on stdout.
    print(f"database: {shown_url(url)}", file=sys.stderr)
    db = Database(url)
    try:
        if new:
            await migrate.upgrade(db)
    except BaseException:
        await db.dispose()
        raise
    return db, settings


async def _new_schema(url: str, shown: str) -> bool:
    """Whether the database has no schema yet: then it is created, as `jobtask up` creates it
    on a first run. A schema at another revision than this jobtask's is refused before the
    database is opened for writing: upgrading it here would change the schema under the
    servers running now, which nobody asked for (`jobtask db upgrade` is how)."""
    from jobtask.domain.errors import FailedPrecondition
    from jobtask.store import migrate

    revision = await migrate.stored_revision(url)
    state = migrate.standing(revision)
    if revision is None or state is migrate.Standing.CURRENT:
        return revision is None
    if state is migrate.Standing.UNKNOWN:
        raise migrate.UnknownRevision(shown, revision)
    raise FailedPrecondition(
        f"{shown}: schema at revision {revision}, this jobtask's at {migrate.head_revision()}:"
        " run `jobtask db upgrade` first"
    )


def _jsonable(record: TokenRow) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, dt.datetime) else v)
        for k, v in dataclasses.asdict(record).items()
    }


async def create(args: argparse.Namespace) -> int:
    from jobtask.domain.scopes import ALL, WORKER_SCOPES
    from jobtask.manager.tokens import issue_token

    scopes = list(WORKER_SCOPES) if args.worker else parse_scopes(args.scopes)
    expires = parse_expires(args.expires) if args.expires else None
    db, settings = await _open(args)
    try:
        record, token = await issue_token(
            db,
            settings,
            user_uuid=args.user,
            is_admin=args.admin,
            scopes=[ALL] if scopes is None else scopes,
            expires_at=expires,
        )
    finally:
        await db.dispose()
    if args.json:
        print(json.dumps({**_jsonable(record), "api_token": token}, indent=2))
    else:
        print(token)
    return 0


async def list_command(args: argparse.Namespace) -> int:
    from jobtask.manager.tokens import list_tokens

    db, _ = await _open(args)
    try:
        records = await list_tokens(db, include_revoked=args.all)
    finally:
        await db.dispose()
    if args.json:
        print(json.dumps([_jsonable(r) for r in records], indent=2))
        return 0
    for r in records:
        expires = r.expires_at.isoformat() if r.expires_at else "never"
        state = " REVOKED" if r.revoked_at else ""
        print(f"{r.uuid}  {r.owner_uuid}  expires {expires}{state}  {json.dumps(r.scopes)}")
    return 0


async def revoke(args: argparse.Namespace) -> int:
    from jobtask.manager.tokens import revoke_token

    db, _ = await _open(args)
    try:
        record = await revoke_token(db, args.uuid)
    finally:
        await db.dispose()
    print(f"revoked {record.uuid}")
    return 0
