"""Jobs' and tasks' uuids: the Arvados form, unique, and in the order they were made (so the
indexes keyed by them grow at their end)."""

from __future__ import annotations

import itertools
import os
import time

import pytest
from jobtask.domain import uuids
from jobtask.domain.uuids import JOB_INFIX, TASK_INFIX, UUID_RE, ordered_uuid


def test_ordered_uuids_have_the_form_and_sort_in_the_order_made() -> None:
    made = [ordered_uuid("zzzzz", JOB_INFIX if n % 2 else TASK_INFIX) for n in range(500)]
    assert all(UUID_RE.match(u) for u in made)
    assert len(set(made)) == len(made)
    tails = [u[12:] for u in made]
    assert tails == sorted(tails)


def test_a_forked_child_does_not_repeat_its_parents_uuids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next uuids, to the parent
        os.close(read)
        os.write(write, " ".join(ordered_uuid("zzzzz", JOB_INFIX) for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    ours = {ordered_uuid("zzzzz", JOB_INFIX) for _ in range(50)}
    with os.fdopen(read) as f:
        theirs = set(f.read().split())
    os.waitpid(pid, 0)
    assert len(theirs) == 50
    assert not ours & theirs


def test_an_ordered_uuids_tail_is_its_time_then_its_count_in_base_36(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start = 36**8 - 3  # the count wraps within the eight characters
    monkeypatch.setattr(uuids, "_counter", itertools.count(start))
    before = int((time.time() - uuids._EPOCH) * 10)
    made = [ordered_uuid("zzzzz", JOB_INFIX) for _ in range(6)]
    after = int((time.time() - uuids._EPOCH) * 10)
    for n, uuid in enumerate(made):
        head, count = uuid[12:19], uuid[19:]
        assert before <= int(head, 36) <= after
        assert count == uuids.base36((start + n) % 36**8, 8)
