"""This process's open watch streams (for the feed lag) and the free slots its workers
last reported: in-memory, updated without any SQL."""

from __future__ import annotations

import itertools
import time

__all__ = ["WATCHES", "WORKER_SLOTS", "WatchPositions", "WorkerSlots"]


class WatchPositions:
    """Each open watch stream's job and the last event seq it was sent."""

    def __init__(self) -> None:
        self._ids = itertools.count()
        self._open: dict[int, tuple[str, int]] = {}

    def opened(self, job_uuid: str, seq: int) -> int:
        key = next(self._ids)
        self._open[key] = (job_uuid, seq)
        return key

    def sent(self, key: int, job_uuid: str, seq: int) -> None:
        self._open[key] = (job_uuid, seq)

    def closed(self, key: int) -> None:
        self._open.pop(key, None)

    def positions(self) -> list[tuple[str, int]]:
        return list(self._open.values())


class WorkerSlots:
    """The free slots each worker announced with its last claim."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, float]] = {}

    def seen(self, worker_id: str, free_slots: int) -> None:
        self._seen[worker_id] = (free_slots, time.monotonic())

    def announced(self, worker_id: str) -> int | None:
        """The free slots the worker announced with its last claim (None: none seen)."""
        seen = self._seen.get(worker_id)
        return None if seen is None else seen[0]

    def free(self, horizon_seconds: float) -> int:
        cutoff = time.monotonic() - horizon_seconds
        for worker_id in [w for w, (_, at) in self._seen.items() if at < cutoff]:
            del self._seen[worker_id]
        return sum(slots for slots, _ in self._seen.values())


WATCHES = WatchPositions()
WORKER_SLOTS = WorkerSlots()
