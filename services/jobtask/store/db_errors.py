"""The one seam where database errors become domain errors: every unit of work of
jobtask.store.database runs inside `translated()`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from jobtask.domain.errors import Aborted, AlreadyExists, DomainError, Unavailable
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

__all__ = ["DISK_FULL", "LostBeforeCommit", "translate", "translated", "unreachable"]

log = logging.getLogger("jobtask.store.database")


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """The one place a unit of work's database errors become domain errors."""
    try:
        yield
    except DomainError:
        raise
    except DBAPIError as exc:
        raise translate(exc) from exc
    except _UNREACHABLE as exc:
        raise unreachable(exc) from exc


class LostBeforeCommit(Exception):
    """A write transaction's connection was lost before its commit: safe to run again."""

    def __init__(self, error: DBAPIError) -> None:
        super().__init__(str(error))
        self.error = error


# SQLSTATEs that mean "try again": serialization failure, deadlock.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}
# SQLSTATEs of a server that cannot be used right now: too many connections, shut down or
# terminated by an administrator, not accepting connections to this database (55000, as
# `ALLOW_CONNECTIONS false` answers). Class 08 (connection exceptions) too.
_UNREACHABLE_SQLSTATES = {"53300", "57P01", "57P02", "57P03", "55000"}
# Raised unwrapped by SQLAlchemy: opening a connection fails in the driver's own socket code
# (asyncpg: ConnectionRefusedError and other OSErrors, TimeoutError), or the pool has no
# connection to give within its timeout.
_UNREACHABLE: tuple[type[Exception], ...] = (OSError, SQLAlchemyTimeoutError)


# SQLite's SQLITE_FULL ("database or disk is full") and PostgreSQL's disk_full.
_SQLITE_FULL = 13
_DISK_FULL_SQLSTATE = "53100"
DISK_FULL = "the database disk is full; try again later"


def unreachable(exc: Exception) -> Unavailable:
    log.warning("database unreachable: %s: %s", type(exc).__name__, exc)
    if isinstance(exc, SQLAlchemyTimeoutError):
        return Unavailable("no database connection is free; try again")
    return Unavailable("the database is unreachable; try again")


def translate(exc: DBAPIError) -> DomainError:
    """The one place database errors become domain errors."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return Aborted("a concurrent change won; try again")
    if isinstance(exc, IntegrityError):
        return AlreadyExists("the object conflicts with an existing one")
    text = str(orig).lower()
    if sqlstate == _DISK_FULL_SQLSTATE or getattr(orig, "sqlite_errorcode", None) == _SQLITE_FULL:
        log.error("database disk full: %s", orig)
        return Unavailable(DISK_FULL)
    if isinstance(exc, OperationalError) and "locked" in text:
        return Unavailable("the database is busy; try again")
    unreachable_state = sqlstate is not None and (
        sqlstate.startswith("08") or sqlstate in _UNREACHABLE_SQLSTATES
    )
    if exc.connection_invalidated or isinstance(exc, OperationalError) or unreachable_state:
        log.warning("database unavailable: %s: %s", type(orig).__name__, orig)
        return Unavailable("the database is unreachable; try again")
    log.error("unexpected database error: %s", exc)
    return Unavailable("the database failed; try again")
