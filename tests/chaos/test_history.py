"""The history checker's live-lease rule on histories written out by hand: a completion
belongs to the lease the task's last claim granted, and its run ended before that lease
expired as last renewed in the feed (tests/chaos/history.py, check_lease)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobtask.store.feed import TASK_CHANGED, TASK_CREATED, TASK_PROGRESS

from tests.chaos.history import LEASE_TTL, History, RunLog, Stored, check_lease, check_lost

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TASK = "zzzzz-ot0gb-000000000000001"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def event(seq: int, seconds: float, kind: str, **payload: Any) -> dict[str, Any]:
    if "lease_expires_at" in payload:
        payload["lease_expires_at"] = at(payload["lease_expires_at"]).isoformat()
    if kind in (TASK_CREATED, TASK_CHANGED):
        # As the checker reads them (feed.full_payload): a task's lease columns always there.
        payload.setdefault("lease_id", None)
        payload.setdefault("lease_expires_at", None)
    return {"seq": seq, "created_at": at(seconds), "type": kind, "payload": payload}


def attempt(lease: str, started: float, expires: float | None = None) -> dict[str, Any]:
    recorded = None if expires is None else at(expires)
    return {
        "attempt": 2,
        "lease_id": lease,
        "started_at": at(started),
        "lease_expires_at": recorded,
    }


def claimed(lease: str, seconds: float, seq: int) -> dict[str, Any]:
    ttl = LEASE_TTL.total_seconds()
    return event(
        seq, seconds, TASK_CHANGED, status="active", lease_id=lease, lease_expires_at=seconds + ttl
    )


def history_of(
    events: list[dict[str, Any]], run_end: float, lease: str = "b", expires: float | None = None
) -> History:
    history = History()
    check_lease(TASK, attempt(lease, 20, expires), events, at(run_end), history, LEASE_TTL)
    return history


def first_attempt() -> list[dict[str, Any]]:
    return [
        event(1, 0, TASK_CREATED, status="queued"),
        claimed("a", 1, 2),
        event(3, 12, TASK_CHANGED, status="queued", lease_id=None),
    ]


def test_a_run_inside_its_lease_is_proven() -> None:
    events = [
        *first_attempt(),
        claimed("b", 20, 4),
        event(5, 28, TASK_PROGRESS, progress=0.5),  # renewed to 38
        event(6, 36, TASK_CHANGED, status="completed", lease_id=None),
    ]
    history = history_of(events, run_end=35)
    assert (history.problems, history.unproven_leases) == ([], 0)


def test_a_run_past_its_recorded_lease_is_unproven() -> None:
    events = [
        *first_attempt(),
        claimed("b", 20, 4),
        event(5, 36, TASK_CHANGED, status="completed", lease_id=None),
    ]
    history = history_of(events, run_end=35)  # the lease, claimed at 20, ran out at 30
    assert (history.problems, history.unproven_leases) == ([], 1)


def test_a_completion_under_a_lease_the_last_claim_did_not_grant() -> None:
    events = [
        *first_attempt(),
        claimed("b", 20, 4),
        event(5, 23, TASK_CHANGED, status="queued", lease_id=None),
        claimed("c", 24, 6),
        event(7, 26, TASK_CHANGED, status="completed", lease_id=None),
    ]
    history = history_of(events, run_end=22)
    assert len(history.problems) == 1
    assert "whose lease the last claim before the completion did not grant" in history.problems[0]


def test_heartbeats_recorded_on_the_attempt_prove_a_run_the_feed_cannot() -> None:
    events = [
        *first_attempt(),
        claimed("b", 20, 4),
        event(5, 36, TASK_CHANGED, status="completed", lease_id=None),
    ]
    # Heartbeats (no events) kept the lease to 40, as the attempt recorded when it ended.
    history = history_of(events, run_end=35, expires=40)
    assert (history.problems, history.unproven_leases) == ([], 0)


def test_a_run_that_ended_after_its_recorded_lease_is_a_problem() -> None:
    events = [
        *first_attempt(),
        claimed("b", 20, 4),
        event(5, 36, TASK_CHANGED, status="completed", lease_id=None),
    ]
    history = history_of(events, run_end=35, expires=31)
    assert len(history.problems) == 1 and "after its lease expired" in history.problems[0]


def test_children_of_a_redone_attempt_may_be_gone_but_not_those_of_the_last() -> None:
    """An attempt that did not end its task is redone from the start, and the tasks it
    created are deleted with it (lifecycle.delete_descendants): only the children of the
    attempt its creator ended with must be in the store."""
    parent = {"uuid": "p", "status": "completed", "attempt": 2}
    kept = {"uuid": "c2", "status": "completed", "attempt": 1}
    stored = Stored(jobs=[], tasks=[parent, kept], attempts=[], events=[])
    log = RunLog([], {"c1": ("p", 1), "c2": ("p", 2), "c3": ("p", 2)})
    history = History()
    check_lost(stored, log, history)
    assert history.problems == ["task c3: created (acknowledged) but not in the store"]
