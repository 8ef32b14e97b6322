"""Gauges read at scrape time: the whole system's, from the store (so every replica shows
the same figures), and this process's pool and streams. The store is read at most once per
`cache_seconds` however often the endpoint is scraped."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Iterator

from jobtask.observability.streams import WATCHES, WORKER_SLOTS
from jobtask.store import stats
from jobtask.store.database import Database
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CACHE_SECONDS", "StoreCollector"]

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0


class StoreCollector(Collector):
    def __init__(
        self,
        db: Database,
        live_horizon: dt.timedelta,
        *,
        cache_seconds: float = CACHE_SECONDS,
        worker_slots: bool = True,
    ) -> None:
        """worker_slots: the process serves TaskService, whose claims announce them."""
        self.db = db
        self.live_horizon = live_horizon
        self.worker_slots = worker_slots
        self.cache_seconds = cache_seconds
        self._stats: stats.Stats | None = None
        self._lag = 0
        self._read_at = -float("inf")
        self._up = 0
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Reads the store unless the last read is younger than cache_seconds."""
        async with self._lock:
            if time.monotonic() - self._read_at < self.cache_seconds:
                return
            self._read_at = time.monotonic()
            since = dt.datetime.now(dt.UTC) - self.live_horizon
            positions = WATCHES.positions()
            try:
                async with self.db.read() as conn:
                    self._stats = await stats.read_stats(conn, live_since=since)
                    heads = await stats.feed_heads(conn, (job for job, _ in positions))
                self._up = 1
            except Exception as exc:  # a scrape reports the store as down, not a 500
                log.warning("metrics: reading the store failed: %s", type(exc).__name__)
                self._up = 0
                return
            self._lag = max((heads.get(job, 0) - seq for job, seq in positions), default=0)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("jobtask_store_up", "1 if the last store read succeeded")
        up.add_metric([], self._up)
        yield up
        found = self._stats or stats.Stats()
        jobs = GaugeMetricFamily("jobtask_jobs", "Jobs by status (store)", labels=["status"])
        for status, n in sorted(found.jobs_by_status.items()):
            jobs.add_metric([status], n)
        yield jobs
        tasks = GaugeMetricFamily("jobtask_tasks", "Tasks by status (store)", labels=["status"])
        for status, n in sorted(found.tasks_by_status.items()):
            tasks.add_metric([status], n)
        yield tasks
        yield _gauge(
            "jobtask_queue_size", "Jobs queued (store)", found.jobs_by_status.get("queued", 0)
        )
        yield _gauge(
            "jobtask_runnable_tasks",
            "Queued tasks of queued or active jobs (store)",
            found.runnable_tasks,
        )
        yield _gauge(
            "jobtask_live_workers",
            "Workers seen within the live horizon (store)",
            found.live_workers,
        )
        yield _gauge("jobtask_feed_head", "Newest change feed seq (store)", found.feed_head)
        yield _gauge(
            "jobtask_feed_lag_events",
            "Largest gap between a job's newest event and what this process's watchers of it"
            " were sent",
            self._lag,
        )
        if self.worker_slots:
            yield _gauge(
                "jobtask_worker_free_slots",
                "Free slots the live workers announced with their last claim to this process",
                WORKER_SLOTS.free(self.live_horizon.total_seconds()),
            )
        usage = self.db.pool_usage()
        if usage is not None:
            pool = GaugeMetricFamily(
                "jobtask_db_pool_connections", "This process's database pool", labels=["state"]
            )
            pool.add_metric(["in_use"], usage[0])
            pool.add_metric(["open"], usage[1])
            yield pool


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family
