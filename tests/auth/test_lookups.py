"""Concurrent calls' token records are read together (jobtask.manager.tokens._Lookups), and
each call still gets exactly what a read of its own would have given it: its own owner, no
credentials for a wrong secret or an unknown uuid, and a revocation committed before a call
refuses that call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
from jobtask.domain.errors import Unavailable
from jobtask.manager.tokens import TokenManager, revoke_token
from jobtask.store.database import Database
from sqlalchemy import event

from tests.auth.conftest import ALICE, BOB, Auth
from tests.core.raw_rows import connect, lock_waits
from tests.engines import engines_of
from tests.polling import DEADLINE, eventually


@contextlib.contextmanager
def token_reads(db: Database) -> Iterator[list[str]]:
    """The token lookups `db` sends while the block runs."""
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if "FROM api_client_authorizations" in statement and statement.lstrip().startswith(
            "SELECT"
        ):
            seen.append(statement)

    engines = engines_of(db)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def test_concurrent_calls_read_their_tokens_together(auth: Auth) -> None:
    core = auth.core
    manager = TokenManager(core.db, core.settings)
    _, alice = await auth.mint(user=ALICE)
    _, bob = await auth.mint(user=BOB)
    alice_uuid = alice.split("/")[1]
    wrong_secret = f"v2/{alice_uuid}/{'x' * 40}"
    unknown = f"v2/zzzzz-gj3su-{'0' * 15}/{'y' * 40}"
    presented = [alice, bob, wrong_secret, unknown] * 8
    with token_reads(core.db) as seen:
        answers = await asyncio.gather(*(manager.authenticate(t) for t in presented))
    for token, creds in zip(presented, answers, strict=True):
        if token == alice:
            assert creds is not None and creds.caller.user_uuid == ALICE
        elif token == bob:
            assert creds is not None and creds.caller.user_uuid == BOB
        else:
            assert creds is None
    if not core.db.is_sqlite:
        # Read together while one read is in flight (SQLite's statements run inline, one
        # call's at a time: there each call reads its own).
        assert len(seen) < len(presented), len(seen)


async def test_a_revocation_refuses_the_next_call_while_lookups_are_in_flight(
    auth: Auth,
) -> None:
    core = auth.core
    manager = TokenManager(core.db, core.settings)
    uuid, token = await auth.mint(user=ALICE)
    earlier = [asyncio.create_task(manager.authenticate(token)) for _ in range(16)]
    await asyncio.sleep(0)  # the first reads, the others wait for the next read
    await revoke_token(core.db, uuid)
    assert await manager.authenticate(token) is None
    for creds in await asyncio.gather(*earlier):  # before the revocation: either answer
        assert creds is None or creds.caller.user_uuid == ALICE
    assert await manager.authenticate(token) is None


async def _two_callers(auth: Auth) -> tuple[TokenManager, str, str]:
    """A token manager of its own, and Alice's and Bob's tokens (PostgreSQL only: there a
    call arriving while another's read is in flight waits for the next, shared read)."""
    core = auth.core
    if core.db.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite's reads run inline, one call's at a time")
    _, alice = await auth.mint(user=ALICE)
    _, bob = await auth.mint(user=BOB)
    return TokenManager(core.db, core.settings), alice, bob


async def test_calls_waiting_on_a_canceled_read_hear_unavailable(auth: Auth) -> None:
    """The shared read is canceled (as the server stops) while calls wait on it: they fail
    UNAVAILABLE, which clients retry, not CANCELLED (as if they had given up)."""
    manager, alice, bob = await _two_callers(auth)
    lookups = manager._lookups
    holder = await connect(auth.core.db.url)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE api_client_authorizations IN ACCESS EXCLUSIVE MODE")
            first = asyncio.create_task(manager.authenticate(alice))  # reads, and waits
            blocked = await eventually(lambda: lock_waits(holder))
            second = asyncio.create_task(manager.authenticate(bob))  # waits for the next read
            await eventually(lambda: lookups._waiting)
            # The first call leaves: the shared read of the second's token starts, and waits.
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            reader = lookups.running
            assert reader is not None
            await eventually(lambda: lock_waits(holder, besides=blocked))
            reader.cancel()
            with pytest.raises(Unavailable, match="shutting down"):
                await second
    finally:
        await holder.close()


async def test_calls_waiting_on_a_read_canceled_before_it_ran_are_answered(auth: Auth) -> None:
    """The shared read canceled before its first step (as the server stops) never runs its
    own cleanup: the calls waiting on it are still told UNAVAILABLE, and the next call reads
    its own token (before, every later call waited forever)."""
    manager, alice, bob = await _two_callers(auth)
    lookups = manager._lookups

    async def first_then_cancel_the_reader() -> None:
        await manager.authenticate(alice)
        # Its read done, it started the shared read of the second call's token: canceled
        # here, in the same step, before that read first ran.
        reader = lookups.running
        assert reader is not None and not reader.done()
        reader.cancel()

    first = asyncio.create_task(first_then_cancel_the_reader())
    second = asyncio.create_task(manager.authenticate(bob))  # waits for the shared read
    await first
    with pytest.raises(Unavailable, match="shutting down"):
        await asyncio.wait_for(second, DEADLINE)
    creds = await asyncio.wait_for(manager.authenticate(bob), DEADLINE)
    assert creds is not None and creds.caller.user_uuid == BOB
