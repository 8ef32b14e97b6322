"""Processes starting together on one fresh SQLite file (a split deployment's JobService
and TaskService, say) race to switch it to WAL: SQLite answers the losers "database is
locked" at once, without waiting out busy_timeout. Every one of them must still start."""

from __future__ import annotations

import threading
from pathlib import Path

from jobtask.store.database import SQLiteDatabase


def test_starters_racing_on_a_fresh_file_all_open_it(tmp_path: Path) -> None:
    for round_ in range(30):  # the race is lost in a few rounds of thirty without the retry
        path = tmp_path / f"race{round_}.sqlite3"
        start = threading.Barrier(6)
        errors: list[str] = []

        def open_file(
            path: Path = path, start: threading.Barrier = start, errors: list[str] = errors
        ) -> None:
            start.wait()
            try:
                SQLiteDatabase._prepare_file(str(path))
            except OSError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=open_file) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert path.read_bytes()[18:20] == b"\x02\x02"  # the file's header says WAL
