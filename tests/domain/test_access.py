"""The one read rule: an object's owner, or an admin."""

from __future__ import annotations

from jobtask.domain.access import may_read, only_owner
from jobtask.manager.context import Caller

ALICE = "zzzzz-tpzed-aaaaaaaaaaaaaaa"
BOB = "zzzzz-tpzed-bbbbbbbbbbbbbbb"


def test_owners_read_their_own_only() -> None:
    alice = Caller(user_uuid=ALICE)
    assert only_owner(alice) == ALICE
    assert may_read(alice, ALICE)
    assert not may_read(alice, BOB)


def test_a_task_token_reads_as_its_owner() -> None:
    task = Caller(user_uuid=ALICE, task_uuid="zzzzz-ot0gb-aaaaaaaaaaaaaaa")
    assert may_read(task, ALICE)
    assert not may_read(task, BOB)


def test_admins_read_everyone() -> None:
    admin = Caller(user_uuid=BOB, is_admin=True)
    assert only_owner(admin) is None
    assert may_read(admin, ALICE)
