"""Ceilings: what this machine allows the throughput figures, each measured in the run that
prints it (`python -m bench --only ceiling`; --tasks sets the task count).

1. The gRPC floor: bench.bare's store-less WorkerSession (the real generated messages, in
   a process of its own) pushing assignments FLOOR_BATCHES a message, and a bare client
   (`python -m bench.ceiling floor ...`, another process) answering each task with a
   completion report, a message of reports for each message of assignments, no lease
   bookkeeping. Per batch size, three clients: nothing per task ("bare"); `await noop()`
   per task ("await"); and the agent's shape ("task": an asyncio.create_task per task
   that awaits noop() and queues its report, one writer sending everything queued as one
   message, as jobtask.worker's session link does). Beside them, the store-less row of
   bench.throughput: jobtask's own worker agent draining the same server. The notes give
   each process's CPU per task and what the session's messages carried (bench.bare
   counts them: assignments per message out, reports per message back).
2. The database alone: one fan-out job of COUNT tasks run by jobtask (bench.server
   --capture records every statement it sends, per transaction: bench.capture), then the
   transactions committed between the workers' start and the last completion replayed in
   commit order on one bare connection (sqlite3 with the store's pragmas; asyncpg) to a
   database brought to the same start by replaying the ones before: tasks/s is what the
   database alone does with today's statements, serially (on PostgreSQL it moves with the
   planner's statistics of the moment; the notes name the costliest statements). Beside
   it, minimal peer-shaped statements on one connection: on PostgreSQL PgQueuer's (a
   claim UPDATE ... FOR UPDATE SKIP LOCKED RETURNING of `batch` jobs, then one statement
   deleting them and writing their log rows), on SQLite Huey's (per task: BEGIN
   IMMEDIATE, SELECT the first, DELETE it, COMMIT), after enqueuing COUNT rows a thousand
   a statement; their CPU per task in the notes.
3. CPU per task: the fan-out case (one worker) on each store and each peer as
   bench.throughput runs them, with the CPU seconds every process spent in the measured
   window: server, worker(s) or consumer, this process (the load generator), and on
   PostgreSQL the backends serving the run's database (sampled from /proc, so a backend
   that exits still counts: harness.PostgresCpu; PostgreSQL's shared processes, the WAL
   writer and checkpointer, are not counted). On SQLite the database
   runs inside the process that sends the statements. Two bounds follow from each:
   cores / CPU per task, and 1 / the busiest process's CPU per task (one Python process
   uses one core at most).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from jobtask.v1 import job_task_pb2, task_service_pb2, task_service_pb2_grpc
from sqlalchemy.engine import make_url

from bench import bare, capture, throughput
from bench.bare import BATCH_KEY
from bench.harness import (
    Config,
    PostgresCpu,
    Result,
    announce,
    child,
    log,
    own_cpu_seconds,
)
from bench.stack import CHANNEL_OPTIONS, postgres_database
from bench.throughput import BARE_JOB, SLOTS, Observed

FLOOR_BATCHES = (1, 10, 100)
FLOOR_MODES = ("bare", "await", "task")
FLOOR_TASKS = 20_000
PGQUEUER_BATCHES = (10, 100)
ENQUEUE_CHUNK = 1_000
COMPLETED = job_task_pb2.TASK_STATUS_COMPLETED
CORES = os.cpu_count() or 1


# -- 1. the gRPC floor: the client ----------------------------------------------------------


async def noop() -> None:
    pass


def _report(a: task_service_pb2.TaskAssignment) -> task_service_pb2.RunTaskRequest:
    return task_service_pb2.RunTaskRequest(
        task_uuid=a.task.uuid,
        lease_id=a.lease.lease_id,
        seq=1,
        progress=1.0,
        success=True,
        exit_code=0,
    )


async def floor_client(addr: str, count: int, batch: int, mode: str) -> float:
    """Drains `count` tasks from bench.bare's WorkerSession; the seconds it took."""
    window = max(SLOTS, 2 * batch)
    channel = grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)
    stub = task_service_pb2_grpc.TaskServiceStub(channel)  # type: ignore[no-untyped-call]
    call = stub.WorkerSession(metadata=((BATCH_KEY, str(batch)),))
    granted = min(window, count)
    outbox: list[task_service_pb2.RunTaskRequest] = []
    wake = asyncio.Event()
    running: set[asyncio.Task[None]] = set()

    async def send(reports: list[task_service_pb2.RunTaskRequest]) -> None:
        nonlocal granted
        credits = min(len(reports), count - granted)
        granted += credits
        await call.write(task_service_pb2.WorkerSessionRequest(credits=credits, reports=reports))

    async def run(a: task_service_pb2.TaskAssignment) -> None:
        await noop()
        outbox.append(_report(a))
        wake.set()

    async def writer() -> None:
        while True:
            await wake.wait()
            wake.clear()
            reports = outbox[:]
            outbox.clear()
            await send(reports)

    start = time.perf_counter()
    writing = asyncio.create_task(writer())
    info = task_service_pb2.WorkerInfo(
        worker_id="floor", node_name="bench", free_slots=granted, cores=2
    )
    await call.write(task_service_pb2.WorkerSessionRequest(open=info))
    done = 0
    while done < count:
        response = await call.read()
        if response is grpc.aio.EOF:  # type: ignore[attr-defined]
            raise RuntimeError("the server ended the session")
        done += sum(1 for u in response.updates if u.task.status == COMPLETED)
        if not response.assignments:
            continue
        if mode == "task":
            for a in response.assignments:
                task = asyncio.create_task(run(a))
                running.add(task)
                task.add_done_callback(running.discard)
            continue
        reports = []
        for a in response.assignments:
            if mode == "await":
                await noop()
            reports.append(_report(a))
        await send(reports)
    seconds = time.perf_counter() - start
    writing.cancel()
    call.cancel()
    await channel.close(None)
    return seconds


async def _floor_main(argv: list[str]) -> None:
    addr, count, batch, mode = argv[0], int(argv[1]), int(argv[2]), argv[3]
    cpu = own_cpu_seconds()
    seconds = await floor_client(addr, count, batch, mode)
    announce(seconds=seconds, cpu=own_cpu_seconds() - cpu)


# -- 1. the gRPC floor: the rows ------------------------------------------------------------


def _carried(traffic: struct_pb2.Struct) -> str:
    """How many tasks the session's messages carried, each way."""
    t: dict[str, float] = json_format.MessageToDict(traffic)
    out = t.get("assignments", 0) / max(1, t.get("responses", 0))
    back = t.get("reports", 0) / max(1, t.get("requests", 0))
    return (
        f"{t.get('responses', 0):,.0f} messages to the worker, {out:.1f} assignments each; "
        f"{t.get('requests', 0):,.0f} from it, {back:.1f} reports each"
    )


async def floor(cfg: Config, huey: float | None) -> list[Result]:
    count = cfg.pick(FLOOR_TASKS, 50)
    results = []
    async with child("bench.bare", BARE_JOB.SerializeToString().hex()) as (server, ready):
        addr = f"127.0.0.1:{ready['port']}"
        channel = grpc.aio.insecure_channel(addr)
        stats = bare.stubs(channel)["stats"]
        for batch in FLOOR_BATCHES:
            for mode in FLOOR_MODES:
                log(f"ceiling: gRPC floor, {count:,} tasks, {batch} a message, client {mode}")
                before = server.cpu_seconds()
                args = (addr, str(count), str(batch), mode)
                async with child("bench.ceiling", "floor", *args) as (_, out):
                    pass
                server_us = (server.cpu_seconds() - before) / count * 1e6
                client_us = out["cpu"] / count * 1e6
                carried = _carried(await stats(empty_pb2.Empty()))
                results.append(
                    Result(
                        "ceiling gRPC floor",
                        f"WorkerSession, {batch} a message, client: {_MODES[mode]}",
                        "tasks/s",
                        count / out["seconds"],
                        "Huey (SQLite)",
                        huey,
                        note=f"CPU per task: server {server_us:,.0f} µs, "
                        f"client {client_us:,.0f} µs; {carried}",
                    )
                )
        log(f"ceiling: the store-less session, jobtask's worker agent, {count:,} tasks")
        before, agent = server.cpu_seconds(), Observed()
        rate = await throughput.protocol_ceiling(count, addr, agent)
        server_us = (server.cpu_seconds() - before) / count * 1e6
        worker_us = agent.cpu["worker"] / count * 1e6
        carried = _carried(await stats(empty_pb2.Empty()))
        await channel.close(None)
    results.append(
        Result(
            "ceiling gRPC floor",
            "store-less WorkerSession (bench/bare.py), jobtask's worker agent, 1 worker",
            "tasks/s",
            rate,
            "Huey (SQLite)",
            huey,
            note=f"bench.throughput's no-store row on the same server: CPU per task: server "
            f"{server_us:,.0f} µs, worker {worker_us:,.0f} µs; {carried}",
        )
    )
    return results


_MODES = {
    "bare": "nothing per task",
    "await": "await noop() per task",
    "task": "create_task per task (the agent's shape)",
}


# -- 2. the database alone ------------------------------------------------------------------


async def replayed(kind: str, count: int, peer: tuple[str, float | None]) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp:
        path = os.path.join(tmp, "statements.pickle")
        seen = Observed(server_args=("--capture", path))
        log(f"ceiling: jobtask on {kind}, fan-out of {count:,} tasks, statements recorded")
        rate, _ = await throughput.jobtask_fanout(kind, count, 1, seen)
        recorded = capture.load(path)
        log(f"ceiling: {kind} alone replaying them")
        if kind == "sqlite":
            r = capture.replay_sqlite(os.path.join(tmp, "replay.sqlite3"), recorded, seen.window)
        else:
            async with postgres_database("jobtask_replay") as dsn:
                r = await capture.replay_postgres(dsn, recorded, seen.window)
    per = f"{r.transactions / count:.3f} transactions, {r.statements / count:.2f} statements"
    cpu = (r.client_cpu + r.database_cpu) / count * 1e6
    note = (
        f"per task: {per} ({r.rows / count:.1f} counting executemany rows); CPU per task "
        f"{cpu:,.0f} µs (replaying process {r.client_cpu / count * 1e6:,.0f}, "
        f"PostgreSQL backend {r.database_cpu / count * 1e6:,.0f}); jobtask itself, "
        f"recording them: {rate:,.0f} tasks/s; the replay's time by statement: "
        + "; ".join(f"{100 * t / r.seconds:.0f}% «{head} …»" for head, t in r.costliest)
    )
    return [
        Result(
            f"ceiling {kind} alone",
            f"jobtask's statements for a {count:,}-task fan-out, replayed on one connection",
            "tasks/s",
            count / r.seconds,
            *peer,
            note=note,
        )
    ]


async def pgqueuer_shaped(count: int, batch: int, peer: float | None) -> Result:
    """PgQueuer's statements, minimal: enqueue, claim `batch` a statement, complete them."""
    import asyncpg  # type: ignore[import-untyped]  # no stubs published

    async with postgres_database("pgq_shaped") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "CREATE TABLE q (id bigserial PRIMARY KEY, priority int NOT NULL DEFAULT 0,"
                " created timestamptz NOT NULL DEFAULT now(),"
                " updated timestamptz NOT NULL DEFAULT now(),"
                " status text NOT NULL DEFAULT 'queued', entrypoint text NOT NULL, payload bytea);"
                " CREATE INDEX q_queued ON q (priority DESC, id) WHERE status = 'queued';"
                " CREATE TABLE q_log (id bigserial PRIMARY KEY, job_id bigint NOT NULL,"
                " status text NOT NULL, entrypoint text NOT NULL, priority int NOT NULL,"
                " created timestamptz NOT NULL DEFAULT now())"
            )
            backend = PostgresCpu(make_url(dsn).database or "")
            backend.start()
            cpu, start = own_cpu_seconds(), time.perf_counter()
            for i in range(0, count, ENQUEUE_CHUNK):
                n = min(ENQUEUE_CHUNK, count - i)
                await conn.execute(
                    "INSERT INTO q (entrypoint, payload)"
                    " SELECT * FROM unnest($1::text[], $2::bytea[])",
                    ["noop"] * n,
                    [None] * n,
                )
            done = 0
            while True:
                rows = await conn.fetch(
                    "UPDATE q SET status = 'picked', updated = now() WHERE id = ANY(ARRAY("
                    "SELECT id FROM q WHERE status = 'queued' AND entrypoint = ANY($1::text[])"
                    " ORDER BY priority DESC, id LIMIT $2 FOR UPDATE SKIP LOCKED))"
                    " RETURNING id, priority, created, updated, status, entrypoint, payload",
                    ["noop"],
                    batch,
                )
                if not rows:
                    break
                await conn.execute(
                    "WITH done AS (DELETE FROM q WHERE id = ANY($1::bigint[])"
                    " RETURNING id, entrypoint, priority) INSERT INTO q_log"
                    " (job_id, status, entrypoint, priority)"
                    " SELECT id, 'successful', entrypoint, priority FROM done",
                    [r["id"] for r in rows],
                )
                done += len(rows)
            seconds = time.perf_counter() - start
            db = backend.stop()
            cpu = own_cpu_seconds() - cpu - backend.own
        finally:
            await conn.close()
    if done != count:
        raise RuntimeError(f"PgQueuer-shaped: {done} of {count} done")
    return Result(
        "ceiling postgres alone",
        f"PgQueuer-shaped statements, {count:,} jobs, claim {batch} a statement",
        "tasks/s",
        count / seconds,
        f"PgQueuer batch_size {batch}",
        peer,
        note="enqueue (a thousand a statement), claim UPDATE ... SKIP LOCKED RETURNING, one "
        "DELETE + log INSERT per claim; one connection, each statement its own transaction; "
        f"CPU per task: PostgreSQL backend {db / count * 1e6:,.0f} µs, "
        f"the process sending them {cpu / count * 1e6:,.0f} µs",
    )


def huey_shaped(count: int, peer: float | None) -> Result:
    """Huey's SQLite statements, minimal: enqueue, then per task take the first and delete."""
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp:
        conn = capture.sqlite_connect(os.path.join(tmp, "q.sqlite3"))
        conn.execute(
            "CREATE TABLE task (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, data BLOB,"
            " priority REAL NOT NULL DEFAULT 0)"
        )
        conn.execute("CREATE INDEX task_priority_id ON task (priority DESC, id ASC)")
        cpu, start = own_cpu_seconds(), time.perf_counter()
        for i in range(0, count, ENQUEUE_CHUNK):
            n = min(ENQUEUE_CHUNK, count - i)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO task (queue, data, priority) VALUES (?, ?, ?)",
                [("bench", b"noop", 0.0)] * n,
            )
            conn.execute("COMMIT")
        done = 0
        while True:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT id, data FROM task WHERE queue = ? ORDER BY priority DESC, id LIMIT 1",
                ("bench",),
            ).fetchone()
            if row is None:
                conn.execute("COMMIT")
                break
            conn.execute("DELETE FROM task WHERE id = ?", (row[0],))
            conn.execute("COMMIT")
            done += 1
        seconds = time.perf_counter() - start
        cpu = own_cpu_seconds() - cpu
        conn.close()
    if done != count:
        raise RuntimeError(f"Huey-shaped: {done} of {count} done")
    return Result(
        "ceiling sqlite alone",
        f"Huey-shaped statements, {count:,} tasks",
        "tasks/s",
        count / seconds,
        "Huey (SQLite)",
        peer,
        note="enqueue (a thousand a transaction), then per task BEGIN IMMEDIATE, SELECT the "
        f"first, DELETE it, COMMIT; sqlite3 {sqlite3.sqlite_version}, the store's pragmas; "
        f"CPU per task {cpu / count * 1e6:,.0f} µs",
    )


# -- 3. CPU per task -------------------------------------------------------------------------


Measured = tuple[Observed, int]  # the run's window and CPU, and its task count


def _cpu_rows(system: str, run: Measured, peer: Measured | None, ref: str) -> list[Result]:
    """Rows: CPU per task in all, each process's, and the two bounds they imply."""
    seen, tasks = run
    per = {k: v / tasks * 1e6 for k, v in seen.cpu.items()}
    total = sum(per.values())
    peer_total = sum(peer[0].cpu.values()) / peer[1] * 1e6 if peer else None
    parts = ", ".join(f"{k} {v:,.0f}" for k, v in per.items())
    rows = [
        Result(
            "ceiling CPU",
            f"{system}: CPU per task, every process",
            "µs",
            total,
            ref if peer else "",
            peer_total,
            better="lower",
            note=f"{system}: {parts} µs; wall {seen.seconds / tasks * 1e6:,.0f} µs per task",
        )
    ]
    # (A part with no CPU counted has no row: /proc counts CPU in clock ticks of 10 ms, so
    # a short run's worker may show none, and SQLite has no database process.)
    for part, us in per.items():
        if us > 0:
            rows.append(
                Result("ceiling CPU", f"{system}: CPU per task, {part}", "µs", us, better="lower")
            )
    busiest = max(per.values())
    rows.append(
        Result(
            "ceiling CPU",
            f"{system}: bound = {CORES} cores / CPU per task",
            "tasks/s",
            CORES / total * 1e6 if total else 0.0,  # (0: no tick counted, a tiny run)
            note=f"{system}: 1 / busiest process's CPU per task = "
            f"{1e6 / busiest if busiest else 0:,.0f} tasks/s; "
            f"measured {tasks / seen.seconds:,.0f} tasks/s",
        )
    )
    return rows


async def cpu(count: int, cfg: Config) -> tuple[list[Result], dict[str, float]]:
    """CPU per task of jobtask (fan-out, one worker) and of each peer; and the peers'
    tasks/s (as bench.throughput figures them), for the other sections' references."""
    have = throughput._have
    peers: dict[str, tuple[Observed, int, float]] = {}

    async def peer(
        name: str, module: str, tasks: int, go: Callable[[Observed], Awaitable[tuple[float, str]]]
    ) -> None:
        if not have(module):
            return
        importlib.import_module(module)  # not in the figure: the import, once
        log(f"ceiling: {name}, {tasks:,} tasks, CPU measured")
        seen = Observed()
        rate, _ = await go(seen)
        peers[name] = (seen, tasks, rate)

    await peer("Huey (SQLite)", "huey", count, lambda s: throughput.huey(count, s))
    jobs = cfg.pick(throughput.PGQUEUER_JOBS, 50)
    for batch in PGQUEUER_BATCHES:
        await peer(
            f"PgQueuer batch_size {batch}",
            "pgqueuer",
            jobs,
            lambda s, b=batch: throughput.pgqueuer(jobs, b, s),  # type: ignore[misc]
        )
    await peer(
        "procrastinate (PG)", "procrastinate", count, lambda s: throughput.procrastinate(count, s)
    )
    results: list[Result] = []
    for kind, ref in (("sqlite", "Huey (SQLite)"), ("postgres", "PgQueuer batch_size 10")):
        log(f"ceiling: jobtask on {kind}, fan-out of {count:,} tasks, 1 worker, CPU measured")
        seen = Observed()
        await throughput.jobtask_fanout(kind, count, 1, seen)
        found = peers.get(ref)
        measured = (found[0], found[1]) if found else None
        results.extend(_cpu_rows(f"jobtask {kind}", (seen, count), measured, ref))
    for name, (seen, tasks, _) in peers.items():
        results.extend(_cpu_rows(name, (seen, tasks), None, ""))
    return results, {name: rate for name, (_, _, rate) in peers.items()}


# -- the benchmark ----------------------------------------------------------------------------


async def run(cfg: Config) -> list[Result]:
    count = cfg.pick(throughput.TASKS, 50)
    cpu_results, rates = await cpu(count, cfg)
    results = await floor(cfg, rates.get("Huey (SQLite)"))
    results += await replayed("sqlite", count, ("Huey (SQLite)", rates.get("Huey (SQLite)")))
    results.append(huey_shaped(count, rates.get("Huey (SQLite)")))
    ref = "PgQueuer batch_size 10"
    results += await replayed("postgres", count, (ref, rates.get(ref)))
    jobs = cfg.pick(throughput.PGQUEUER_JOBS, 50)
    for batch in PGQUEUER_BATCHES:
        log(f"ceiling: PgQueuer-shaped statements, {jobs:,} jobs, claim {batch} a statement")
        results.append(
            await pgqueuer_shaped(jobs, batch, rates.get(f"PgQueuer batch_size {batch}"))
        )
    return results + cpu_results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("what", choices=["floor"])
    parser.add_argument("args", nargs="*")
    args = parser.parse_args()
    asyncio.run(_floor_main(args.args))


if __name__ == "__main__":
    main()
