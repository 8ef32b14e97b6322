"""The benchmark suite's smoke run: every benchmark at tiny sizes, so the suite cannot rot.

No timing is asserted (the machine is shared); what is checked is that each benchmark runs
end to end against real servers and reports a figure. The peers (Huey, procrastinate) run
only where the `bench` extra is installed (Huey, procrastinate, PgQueuer).
"""

from __future__ import annotations

import importlib.util
import math
import shutil
from typing import Any

import pytest

from bench import (
    capture,
    ceiling,
    claim_path,
    dashboard,
    fairshare,
    fanout,
    fanout_cpu,
    floor,
    group_lock,
    holds,
    ingest,
    jobs_cycle,
    jobs_statements,
    latency,
    memory,
    replicas,
    throughput,
    timeline,
    unary,
    versus,
    watch_cpu,
)
from bench.harness import ROOT, Config, Result, table

SMOKE = Config(smoke=True)


def _check(results: list[Result]) -> None:
    assert results
    for r in results:
        assert math.isfinite(r.value) and r.value > 0, r
        assert r.met is None  # no targets in a smoke run
    assert table(results)


async def test_unary() -> None:
    _check(await unary.run(SMOKE))


async def test_ingest() -> None:
    results = await ingest.run(SMOKE)
    _check(results)
    assert "nothing lost" in results[0].note


async def test_fanout() -> None:
    _check(await fanout.run(SMOKE))


async def test_memory() -> None:
    _check(await memory.run(SMOKE))


@pytest.mark.slow
async def test_dashboard() -> None:
    # Headless Debian chromium, as tests/dashboard (scripts/ensure_chromium.sh).
    results = await dashboard.run(SMOKE)
    _check(results)
    assert "tasks done" in results[2].note


@pytest.mark.postgres
async def test_throughput() -> None:
    results = await throughput.run(SMOKE)
    _check(results)
    # Each case with 1 and with 4 worker processes (bench.fleet).
    for workers in ("1 worker", "4 workers"):
        assert any(r.metric.endswith(workers) for r in results)
    assert any(r.bench == "throughput no store" for r in results)
    # One-task jobs submitted both ways: batched, and a CreateJob each.
    for way in ("BatchCreateJobs, 100 a call", "CreateJob each"):
        assert any(way in r.metric for r in results), way
    peers = [importlib.util.find_spec(m) for m in ("huey", "procrastinate", "pgqueuer")]
    if all(peers):
        assert all(r.reference_value for r in results)
        references = {r.reference for r in results}
        assert {"PgQueuer batch_size 10", "PgQueuer batch_size 100"} <= references


@pytest.mark.postgres
async def test_big_fanout() -> None:
    # --big at a tiny size: the fan-out case alone, both stores.
    results = await throughput.big(SMOKE)
    _check(results)
    assert [r.bench for r in results] == ["throughput sqlite", "throughput postgres"]


@pytest.mark.postgres
async def test_latency() -> None:
    results = await latency.run(SMOKE)
    _check(results)
    # p50 and p99, idle and under load, and the worst of the start's first probes: both stores
    assert len(results) == 10
    assert all(r.unit == "ms" for r in results)
    firsts = [r for r in results if "after the start" in r.metric]
    assert len(firsts) == 2 and not any(r.target for r in firsts)


async def test_fairshare() -> None:
    _check(await fairshare.run(SMOKE))


@pytest.mark.postgres
async def test_ceiling() -> None:
    results = await ceiling.run(SMOKE)
    _check(results)
    benches = {r.bench for r in results}
    assert {"ceiling gRPC floor", "ceiling sqlite alone", "ceiling postgres alone"} <= benches
    # Every batch size of the floor, each with the three clients.
    for batch in ceiling.FLOOR_BATCHES:
        assert sum(f"WorkerSession, {batch} a message" in r.metric for r in results) == 3
    # jobtask's CPU per task split by process, on both stores: the server's at least (at 50
    # tasks the worker's and PostgreSQL's may stay under one of /proc's clock ticks, and
    # then have no row).
    for kind in ("sqlite", "postgres"):
        assert any(r.metric == f"jobtask {kind}: CPU per task, server" for r in results)


async def test_pages_written_by_one_task_jobs(tmp_path: Any) -> None:
    # A recording of one-task jobs (bench.server --capture through jobtask_jobs's
    # Observed), and the pages its replay writes, by table and index.
    path = str(tmp_path / "statements.pickle")
    seen = throughput.Observed(server_args=("--capture", path))
    await throughput.jobtask_jobs("sqlite", 20, 1, seen=seen)
    pages = capture.pages_written(str(tmp_path / "replay.sqlite3"), capture.load(path))
    # Every table a one-task job writes, and the events' index by job.
    assert {"jobs", "job_tasks", "task_attempts", "events", "ix_events_job_uuid_seq"} <= set(pages)
    assert all(n > 0 for n in pages.values())


@pytest.mark.postgres
async def test_floor() -> None:
    if shutil.which(floor.PGBENCH) is None:
        pytest.skip("pgbench is not installed")
    results = await floor.run(SMOKE)
    _check(results)
    shapes = [r.metric.split(",")[0] for r in results]
    # PgQueuer's shape only where its package is (the bench extra; `make test` has dev's).
    peer = ["pgqueuer"] * 2 if importlib.util.find_spec("pgqueuer") is not None else []
    assert shapes == peer + ["minimal"] * 2 + ["minimal:log-event"] * 2 + ["today (replayed)"]
    # Every shape drained its queue exactly (each run checks it) and wrote WAL of its own.
    for r in results:
        assert "WAL" in r.note and "B/task by relation" in r.note
    # One event a task at claim and one at completion; today's and log-event's three.
    minimal = next(r for r in results if r.metric.startswith("minimal,"))
    assert "2 events a task, 1 attempts" in minimal.note
    logged = next(r for r in results if r.metric.startswith("minimal:log-event"))
    assert "3 events a task" in logged.note


@pytest.mark.postgres
async def test_claim_path() -> None:
    figures = await claim_path.claim_path(200, 45)
    # Every task claimed, the first claim's 45 (the warm-up) included.
    assert figures["tasks"] == 200
    # (/proc counts 10 ms ticks: a smoke run's backends may show none.)
    assert figures["server_us"] > 0 and figures["database_us"] >= 0


@pytest.mark.postgres
async def test_fanout_cpu() -> None:
    for case in ("sqlite", "postgres"):
        line = await fanout_cpu.one(case, 30)
        assert line.startswith(f"{case}: ") and "CPU µs a task: server " in line, line
    # Split over two jobs: every task of both drained (the run waits for each decision).
    line = await fanout_cpu.one("postgres", 30, jobs=2)
    assert line.startswith("postgres (2 jobs): ") and "tasks/s" in line, line


@pytest.mark.postgres
async def test_timeline() -> None:
    for kind in ("sqlite", "postgres"):
        lines = await timeline.timeline(kind, 20)
        assert lines[0].startswith(f"{kind}: 20 tasks in "), lines
        assert any("children: created " in line for line in lines), lines
        assert any("task_created" in line and "(21)" in line for line in lines), lines


@pytest.mark.postgres
async def test_replicas() -> None:
    for case in ("fanout", "jobs"):
        rate, note = await replicas.one(case, 40, 2, 2)
        assert rate > 0, note
        split = note.removeprefix("decided by each worker ").split(";")[0]
        # The fan-out's count includes its first task (the one that created the rest).
        assert sum(int(n) for n in split.split(" / ")) == 40 + (case == "fanout"), note
        assert "CPU µs a task: server " in note, note


@pytest.mark.postgres
async def test_group_lock() -> None:
    figures = await group_lock.group_lock(5, 1, 3)
    assert len(figures["kept"]) == len(figures["whole"]) == 1
    assert all(v > 0 for v in figures["kept"] + figures["whole"]), figures
    # Against a commit's lock_pairs (this one's: HEAD), loaded beside this checkout's.
    figures = await group_lock.group_lock(5, 2, 3, against="HEAD")
    assert set(figures) == {"kept", "kept (database)", "kept@HEAD", "kept@HEAD (database)"}
    assert all(len(v) == 2 for v in figures.values()), figures
    # (The database's CPU, read in clock ticks, may round to nothing at this size.)
    assert all(x > 0 for x in figures["kept"] + figures["kept@HEAD"]), figures
    assert all(x >= 0 for x in figures["kept (database)"] + figures["kept@HEAD (database)"])


@pytest.mark.postgres
async def test_holds() -> None:
    figures = await holds.measure(200)
    # The claims are one guarded statement each (jobtask.manager.claims); a fan-out's first
    # report groups are transactions (their rows not kept yet).
    for kind in ("guarded claim", "group"):
        # Every claim and report group held the job's row, and each statement it ran
        # meanwhile is timed by its first words.
        assert figures[kind]["transactions"] > 0, figures
        assert figures[kind]["held_statements_mean_ms"], figures
    # (Not bounded by 1: a hold is stamped to its connection's return to the pool, after
    # the COMMIT, so the next holder's may start before the last one's ends.)
    assert figures["held_share_of_window"] > 0, figures


async def test_watch_cpu() -> None:
    line = await watch_cpu.one("sqlite", 20, 2, 1, ROOT)
    # Both busy watchers saw every event of the job: 21 tasks, ~4 events each.
    assert " to 2 watcher(s)" in line, line
    events = int(line.split(" events in ")[0].rsplit("(", 1)[1].replace(",", ""))
    assert events >= 2 * 21 * 2, line


async def test_jobs_cycle(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'jobtask.sqlite3'}"
    line = await jobs_cycle.cycle(url, 250, skip=False)
    # Every job claimed and completed (three claims of 100, the last of 50).
    assert line.startswith("250 jobs: "), line
    assert (
        await jobs_cycle.cycle(f"sqlite:///{tmp_path / 'skip.sqlite3'}", 50, skip=True)
    ).startswith("0 jobs: ")


async def test_jobs_statements(tmp_path: Any) -> None:
    out = await jobs_statements.statements(f"sqlite:///{tmp_path / 'jobtask.sqlite3'}", 150)
    lines = out.splitlines()
    assert lines[0].startswith("150 jobs: "), out
    # The drain's writes only: the submission's INSERTs of jobs and tasks are not counted,
    # and each claimed job's attempt is one row of the attempts' INSERT.
    assert not any(
        "INSERT INTO jobs " in line or "INSERT INTO job_tasks " in line for line in lines
    )
    (attempts,) = [line for line in lines if "INSERT INTO task_attempts " in line]
    assert " 150 rows " in attempts, attempts


@pytest.mark.skipif(not importlib.util.find_spec("huey"), reason="the bench extra's Huey")
async def test_versus(capsys: pytest.CaptureFixture[str]) -> None:
    ratios = await versus.rounds("sqlite:jobs", "huey", 30, 2)
    assert len(ratios) == 2 and all(math.isfinite(r) and r > 0 for r in ratios)
    lines = capsys.readouterr().out.splitlines()
    # Both sides ran in each round, the one first taking turns.
    assert [line.split()[1] for line in lines if "tasks/s" in line] == [
        "jobtask",
        "huey",
        "huey",
        "jobtask",
    ]
