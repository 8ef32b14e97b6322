"""A claim's candidates are read by position (store.claims.CANDIDATE_ID, CANDIDATE_JOB_ID,
FAILED_BY_ME and the owner's column in fair share's pages), not by name: on each store,
each position holds the column it names, in every form of the rows (fair share's pages or
priority pages; whole rows on SQLite, narrow asyncpg Records on PostgreSQL), and
lock_candidates gives each candidate's whole row back."""

from __future__ import annotations

from typing import Any

import pytest
from jobtask.manager.context import utcnow
from jobtask.store import claims
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import Cluster
from tests.worker_protocol.helpers import job_with_tasks


@pytest.mark.parametrize("fair_share", [True, False])
async def test_candidate_positions_hold_their_columns(cluster: Cluster, fair_share: bool) -> None:
    db = cluster.services.core.db
    for n in range(2):
        await job_with_tasks(cluster, f"positions{n}.py", 2)

    async def read(conn: AsyncConnection) -> tuple[list[Any], list[Any], bool]:
        now = utcnow()
        turns: dict[str, int] | None = {} if fair_share else None
        found = await claims.candidates(conn, "w1", 10, now=now, turns=turns)
        locked = await claims.lock_candidates(conn, "w1", found, now)
        return found, locked, conn.dialect.name == "postgresql"

    found, locked, narrow = await db.transact(read)
    assert found and len(locked) == len(found)
    for row in found:
        names = _names(row)
        assert names[claims.CANDIDATE_ID] == "id"
        assert names[claims.CANDIDATE_JOB_ID] == "job_id"
        assert names[claims._OWNER_AT[narrow]] == "owner_uuid"
        if not narrow:  # (whole rows: lock_candidates takes failed_by_me from them)
            assert names[claims.FAILED_BY_ME] == "failed_by_me"
    # lock_candidates' answer: each candidate's whole row and whether w1 failed it.
    ids = [row[claims.CANDIDATE_ID] for row in found]
    assert [task.id for task, _ in locked] == ids
    assert [task.job_id for task, _ in locked] == [row[claims.CANDIDATE_JOB_ID] for row in found]
    assert not any(failed for _, failed in locked)
    # Fair share's pages come in order of arrival within an owner (sorted by position).
    assert ids == sorted(ids)


def _names(row: Any) -> tuple[str, ...]:
    """A row's column names: a SQLAlchemy Row's, or an asyncpg Record's (PostgreSQL's
    candidates, jobtask.store.driver)."""
    return tuple(row._fields) if isinstance(row, Row) else tuple(row.keys())
