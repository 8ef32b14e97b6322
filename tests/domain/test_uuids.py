"""Jobs' and tasks' uuids: the Arvados form, unique, and in the order they were made (so the
indexes keyed by them grow at their end)."""

from __future__ import annotations

import os

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
