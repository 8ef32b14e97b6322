"""`jobtask db upgrade|current`: the database's schema (Alembic migrations).

    jobtask db current      # the schema's revision and the code's; writes nothing
    jobtask db upgrade      # brings the schema to the code's revision (creates it if none)

`db current` exits 0 when the schema is the code's, EXIT_UPGRADE_PENDING (3) when `db
upgrade` has work to do (an older revision, or no schema yet), EXIT_SCHEMA_UNKNOWN (4) when a
newer jobtask migrated the database; 1 when the database cannot be read.
"""

from __future__ import annotations

import argparse
from typing import Any

from jobtask.cli.servers import database_url, shown_url

__all__ = ["EXIT_SCHEMA_UNKNOWN", "EXIT_UPGRADE_PENDING", "add_command"]

EXIT_UPGRADE_PENDING = 3
EXIT_SCHEMA_UNKNOWN = 4
_EXITS = """exit status of `current`: 0 up to date, 3 upgrade pending (an older revision, or no
schema yet), 4 a revision this jobtask does not know (a newer one migrated the database),
1 the database could not be read"""


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "db",
        help="database maintenance",
        epilog=_EXITS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    db_sub = p.add_subparsers(dest="db_command", required=True)
    url_help = "$JOBTASK_DATABASE_URL (default ./jobtask.sqlite3)"
    p = db_sub.add_parser("upgrade", help="bring the schema up to date (Alembic migrations)")
    p.add_argument("--database-url", help=url_help)
    p.set_defaults(run_server=db_upgrade)
    p = db_sub.add_parser(
        "current",
        help="show the schema's revision and the code's; writes nothing",
        epilog=_EXITS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--database-url", help=url_help)
    p.set_defaults(run_server=db_current)


async def db_upgrade(args: argparse.Namespace) -> int:
    from jobtask.store import migrate
    from jobtask.store.database import Database

    url = database_url(args.database_url)
    db = Database(url)
    try:
        await migrate.upgrade(db)
        print(f"{shown_url(url)}: schema at {await migrate.current_revision(db)}")
    finally:
        await db.dispose()
    return 0


async def db_current(args: argparse.Namespace) -> int:
    from jobtask.store import migrate

    url = database_url(args.database_url)
    revision = await migrate.stored_revision(url)
    state = migrate.standing(revision)
    print(f"database: {shown_url(url)}")
    print(f"schema:   {revision or 'none (uninitialised)'}")
    print(f"code:     {migrate.head_revision()}")
    if state is migrate.Standing.CURRENT:
        print("up to date")
        return 0
    if state is migrate.Standing.BEHIND:
        print("upgrade pending: run `jobtask db upgrade`")
        return EXIT_UPGRADE_PENDING
    print("not a revision of this jobtask's: a newer jobtask migrated the database")
    return EXIT_SCHEMA_UNKNOWN
