"""3. Watch fan-out: 100 watchers on one job while its tasks report progress at 300
events/s: delivery latency p50/p99 and deliveries/s, against a bare grpc.aio fan-out server.

What is measured: 100 WatchJob streams on one job (one channel, this process; the server
is a child process on SQLite) while 30 RunTask streams of that job's tasks each send a
progress update every 0.1 s, which the server commits as one task_progress event each:
300 events/s offered, 30,000 deliveries/s. Latency of a delivery = the watcher's receipt
time - the event's own `time` (stamped in the committing transaction, before its commit).
Deliveries/s = progress events received by all watchers / the reporting window. The ceiling:
the same 100 watchers on a bare server publishing 300 stamped WatchEvents/s to every
subscriber from an in-memory queue each, one event per message.

jobtask runs twice per round: watchers that ask for one event per message (as clients built
before `max_events_per_message` do) and watchers that ask for packed messages (256 events at
most, as the Python SDK and the gateway do): a watcher that lags then gets its pending events
in one message (WatchEvent.more). The targets apply to the packed watchers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobtask.v1 import job_service_pb2, watch_pb2
from jobtask.v1.task_service_pb2 import RunTaskRequest

from bench.bare import stubs
from bench.harness import Config, Result, log, median, percentile
from bench.stack import bare_server, database, running

WATCHERS = 100
REPORTERS = 30
INTERVAL = 0.1  # per reporter: 30 x 10/s = 300 events/s
PROGRESS = watch_pb2.WATCH_EVENT_TYPE_TASK_PROGRESS
PACKED = 256  # max_events_per_message of the packed watchers


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.count = 0
        self.counting = False
        self.messages = 0
        self.seqs: set[int] = set()  # distinct progress events seen (the commit rate)

    def seen(self, message: watch_pb2.WatchEvent) -> None:
        """A stream message: its own event and those packed in `more`."""
        if not self.counting:
            return
        self.messages += 1
        now = time.time()
        for event in (message, *message.more):
            if event.type == PROGRESS:
                self.count += 1
                self.seqs.add(event.seq)
                self.latencies.append(now - (event.time.seconds + event.time.nanos / 1e9))


async def _watch(stream: Any, tally: Tally, ready: asyncio.Event | None = None) -> None:
    async for event in stream:
        if event.snapshot_done and ready is not None:
            ready.set()
        tally.seen(event)


async def _report(stack: Any, stub: Any, a: Any, seconds: float) -> None:
    call = stub.RunTask(metadata=stack.md)
    await call.write(RunTaskRequest(task_uuid=a.task.uuid, lease_id=a.lease.lease_id))
    reader = asyncio.create_task(_drain(call))
    start = time.monotonic()
    seq = 0
    while (elapsed := time.monotonic() - start) < seconds:
        seq += 1
        await call.write(RunTaskRequest(seq=seq, progress=min(0.99, elapsed / seconds)))
        await asyncio.sleep(max(0.0, seq * INTERVAL - (time.monotonic() - start)))
    await call.write(RunTaskRequest(seq=seq + 1, progress=1.0, success=True, exit_code=0))
    await call.done_writing()
    await reader


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


def _log_rates(name: str, tally: Tally, window: float) -> None:
    """Events made per second (seen by at least one watcher: the commit rate, for jobtask)
    and events per message."""
    log(
        f"  {name}: {len(tally.seqs) / window:.0f} progress events/s made, "
        f"{tally.count / max(tally.messages, 1):.1f} events per message"
    )


def _figures(tally: Tally, seconds: float) -> tuple[float, float, float]:
    lat = tally.latencies
    return 1000 * percentile(lat, 0.5), 1000 * percentile(lat, 0.99), tally.count / seconds


async def jobtask_run(
    stack: Any, seconds: float, per_message: int | None = None
) -> tuple[float, float, float]:
    job, _ = await stack.fanned_out_job([REPORTERS])
    assignments = await stack.claim(REPORTERS)
    tally = Tally()
    watch_stub = stack.job_stub()
    readies = [asyncio.Event() for _ in range(WATCHERS)]
    request = job_service_pb2.WatchJobRequest(uuid=job.uuid)
    if per_message is not None:
        request.max_events_per_message = per_message
    streams = [watch_stub.WatchJob(request, metadata=stack.md) for _ in range(WATCHERS)]
    watchers = [
        asyncio.create_task(_watch(s, tally, r)) for s, r in zip(streams, readies, strict=True)
    ]
    await asyncio.gather(*(r.wait() for r in readies))
    report_stub = stack.task_stub()
    reporters = [asyncio.create_task(_report(stack, report_stub, a, seconds)) for a in assignments]
    await asyncio.sleep(0.5)  # warm-up: every reporter has committed once
    tally.counting = True
    start = time.perf_counter()
    await asyncio.sleep(seconds - 1.0)
    tally.counting = False
    window = time.perf_counter() - start
    await asyncio.gather(*reporters)
    for s in streams:
        s.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    _log_rates(f"jobtask, max_events_per_message {per_message or 1}", tally, window)
    return _figures(tally, window)


async def bare_run(channel: Any, seconds: float) -> tuple[float, float, float]:
    bare = stubs(channel)
    tally = Tally()
    readies = [asyncio.Event() for _ in range(WATCHERS)]
    streams = [bare["watch"](job_service_pb2.WatchJobRequest()) for _ in range(WATCHERS)]
    watchers = [
        asyncio.create_task(_watch(s, tally, r)) for s, r in zip(streams, readies, strict=True)
    ]
    await asyncio.gather(*(r.wait() for r in readies))
    rate = REPORTERS / INTERVAL

    async def publish_all() -> None:
        await bare["publish"](job_service_pb2.GetJobRequest(uuid=f"{rate}:{seconds}"))

    publish = asyncio.create_task(publish_all())
    await asyncio.sleep(0.5)
    tally.counting = True
    start = time.perf_counter()
    await asyncio.sleep(seconds - 1.0)
    tally.counting = False
    window = time.perf_counter() - start
    await publish
    await asyncio.gather(*watchers)
    _log_rates("bare fan-out", tally, window)
    return _figures(tally, window)


async def run(cfg: Config) -> list[Result]:
    seconds = cfg.pick(6.0, 2.0)
    ours: list[tuple[float, float, float]] = []
    packed: list[tuple[float, float, float]] = []
    bare: list[tuple[float, float, float]] = []
    async with database("sqlite") as url, running(url, lease_ttl=60, name="fanout") as stack:
        job = await stack.submit()
        async with bare_server(job) as (_, channel):
            for i in range(cfg.runs):
                log(f"fan-out run {i + 1}/{cfg.runs}: {WATCHERS} watchers, 300 events/s")
                bare.append(await bare_run(channel, seconds))
                ours.append(await jobtask_run(stack, seconds))
                packed.append(await jobtask_run(stack, seconds, PACKED))

    def med(rows: list[tuple[float, float, float]], k: int) -> float:
        return median([r[k] for r in rows])

    results = [
        Result(
            "watch fan-out",
            f"delivery latency p50, packed (max_events_per_message {PACKED})",
            "ms",
            med(packed, 0),
            "bare fan-out",
            med(bare, 0),
            better="lower",
        ),
        Result(
            "watch fan-out",
            f"delivery latency p99, packed (max_events_per_message {PACKED})",
            "ms",
            med(packed, 1),
            "bare fan-out",
            med(bare, 1),
            better="lower",
            target="<= 2x",
        ),
        Result(
            "watch fan-out",
            "deliveries (300 ev/s x 100), packed",
            "deliveries/s",
            med(packed, 2),
            "bare fan-out",
            med(bare, 2),
            target=">= 0.7x",
        ),
        Result(
            "watch fan-out",
            "delivery latency p50, one event per message",
            "ms",
            med(ours, 0),
            "bare fan-out",
            med(bare, 0),
            better="lower",
        ),
        Result(
            "watch fan-out",
            "delivery latency p99, one event per message",
            "ms",
            med(ours, 1),
            "bare fan-out",
            med(bare, 1),
            better="lower",
        ),
        Result(
            "watch fan-out",
            "deliveries (300 ev/s x 100), one event per message",
            "deliveries/s",
            med(ours, 2),
            "bare fan-out",
            med(bare, 2),
        ),
    ]
    if not cfg.smoke:
        p99, rate = results[1], results[2]
        p99.met = p99.ratio is not None and p99.ratio <= 2.0
        rate.met = rate.ratio is not None and rate.ratio >= 0.7
    return results
