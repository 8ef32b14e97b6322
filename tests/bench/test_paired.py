"""bench.paired: the two checkouts take turns at running first (the one run first was seen
to win by 3-5 % on SQLite, whichever it was)."""

from __future__ import annotations

from bench.paired import order


def test_the_checkouts_take_turns_at_running_first() -> None:
    assert [order(r) for r in range(4)] == [
        ("old", "new"),
        ("new", "old"),
        ("old", "new"),
        ("new", "old"),
    ]
