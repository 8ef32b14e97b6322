"""The database-alone floor: the least PostgreSQL work a drained task costs, per shape of
statements, driven by pgbench (a C client: next to no client CPU), on a fresh database
each run (`python -m bench --only floor`; `python -m bench.floor` for chosen shapes).

One task is claimed once and completed once; all work is set-based per batch, one
statement (and one transaction) per claim of `batch` tasks and one per their completion,
each client running both in turn (a pgbench transaction = one batch). The shapes:

- pgqueuer: PgQueuer's own statements (its installed package renders them: the dequeue
  with batch_size, `log_job` for the completions) on its own schema (its `install` SQL).
  Calibration: the real PgQueuer drains the same no-op queue with Python on top, so this
  floor must be above its rate.
- minimal: jobtask's real schema (the project's migrations) and the least that keeps the
  guarantees: the claim picks queued or soft-failed tasks in the partial (status, id)
  index's order (`ORDER BY id` alone lets the planner walk the primary key past every
  claimed row when its statistics say all are queued: O(n) a claim), updates them
  (queued -> active, attempt, lease, worker),
  shifts the job's counts (one UPDATE of its row per batch), opens an attempt row per
  task and writes one event per task (task_changed, a payload of a real event's size);
  the completion the same way (completed, counts, the attempt closed, one event per task).
  The events are inserted after the job's row is locked by the same statement (they are
  joined to its UPDATE's RETURNING), so a job's events commit in `seq` order. No token
  digest is written. Payloads are built per row by format() from a template of a real
  event (614 and 725 bytes), cast to the column's type per row.
- variants of minimal, each one change: `no-events`, `payload-json`, `payload-text`
  (the column's type), `no-attempts`, `log-event` (a completion writes task_log and
  task_changed, two events a task, as jobtask does today), `job-per-task` (the job's row
  updated once per task, `batch` UPDATE statements in the claim's and the completion's
  transaction, instead of once per batch), `fillfactor` (job_tasks at fillfactor 70),
  `lean-indexes` (without the two job_tasks indexes a claim moves for no query of the hot
  path: modified_at, lease_expires_at), `generic-plan` (see below; also
  `pgqueuer:generic-plan`), `generic-inline` (generic plans, the LIMIT written into the
  statement's text instead of a parameter: no planning per execution).
- Plans: pgbench prepares each statement once (`-M prepared`), as asyncpg does; every
  shape runs with plan_cache_mode=force_custom_plan (planned per execution with its
  parameters) except the `generic-plan` variants (force_generic_plan): under the default
  (auto) PostgreSQL switches to the generic plan after five executions when its estimate
  is no worse, and the minimal shape's generic plan (LIMIT a parameter) costs three times
  the CPU, so auto runs moved between the two from one run to the next.
- today: jobtask's own statements, recorded from a real fan-out (bench.capture) and
  replayed in commit order on one asyncpg connection (they touch the same rows, so they
  do not split across clients); asyncpg's CPU is not in the backend's figure.

Each run reports tasks/s (pgbench's rate without connection set-up, times the batch), the
CPU the database's backends spent per task (/proc, harness.PostgresCpu), and the WAL per
task that the run's database wrote (pg_walinspect over the run's LSN range: the records
whose blocks belong to the database, and the commit records of their transactions; full
page images apart), with the WAL by table or index in the notes. synchronous_commit is the
server's (jobtask's sessions leave it at its default, on).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
from jobtask.store.database import SESSION_SETTINGS
from sqlalchemy.engine import make_url

from bench import capture, throughput
from bench.harness import Config, PostgresCpu, Result, log
from bench.stack import postgres_admin_url

PGBENCH = shutil.which("pgbench") or "/usr/bin/pgbench"
# The CLI beside this interpreter (the venv's), else the one on PATH.
JOBTASK = str(Path(sys.executable).with_name("jobtask"))
if not os.path.exists(JOBTASK):
    JOBTASK = shutil.which("jobtask") or "jobtask"
TASKS = 20_000
CLIENTS = (1, 2, 4)
BATCHES = (10, 100)
# The variants run at these (clients, batch) only: they tell what costs, not how it scales.
VARIANT_RUNS = ((2, 10), (2, 100))
VARIANTS = (
    "generic-plan",
    "generic-inline",
    "no-events",
    "payload-json",
    "payload-text",
    "no-attempts",
    "log-event",
    "job-per-task",
    "fillfactor",
    "lean-indexes",
)
JOB_UUID = "zzzzz-8i9sb-000000000000001"
OWNER = "zzzzz-tpzed-000000000000000"
WORKER = "bench-floor-worker"
NODE = "bench-node-0"
LOG = (
    "[jobtask-worker] attempt 1 on bench-node-0 (worker bench-noop-worker-0)\n"
    "[jobtask-worker] attempt 1 ended: exit code 0\n"
)
# Real events' payloads (a fan-out's task_changed at claim, at completion; its task_log),
# their varying fields %s for format(): 614, 725 and 130 bytes as jobtask writes them.
_TASK = (
    '{"id":%s,"uuid":"%s","job_id":1,"job_uuid":"' + JOB_UUID + '","owner_uuid":"' + OWNER + '",'
    '"created_at":"2026-12-05T15:28:16.530097+00:00","modified_at":"%s:00",'
    '"modified_by_user_uuid":"' + OWNER + '","version":%s,"sequence":1,'
)
CLAIMED = (
    _TASK + '"created_by_job_task_uuid":"zzzzz-ot0gb-105rsf7irifoge1","status":"active",'
    '"started_at":"%s:00","attempt":%s,"worker_id":"bench-noop-worker-0",'
    '"node_name":"' + NODE + '",'
    '"lease_id":"%s","lease_expires_at":"%s:00"}'
)
COMPLETED = (
    _TASK + '"created_by_job_task_uuid":"zzzzz-ot0gb-105rsf7irifoge1","status":"completed",'
    '"progress":1.0,"success":true,"log":"[jobtask-worker] attempt 1 on bench-node-0 (worker '
    'bench-noop-worker-0)\\n[jobtask-worker] attempt 1 ended: exit code 0\\n",'
    '"started_at":"%s:00","finished_at":"%s:00","attempt":%s,"worker_id":"bench-noop-worker-0",'
    '"node_name":"' + NODE + '"}'
)
TASK_LOG = '{"log":"%s"}'
# A timestamp as the payloads spell it (ISO; the offset's ":00" is in the templates, as
# pgbench would take a colon in the SQL text for a variable).
TS = "replace(%s::text, ' ', 'T')"


# -- the shapes' SQL ----------------------------------------------------------------------


def _counts(source: str, shift: str) -> str:
    """The job's counts shifted once per batch, its row locked (RETURNING feeds the events);
    no indexed column changes (jobtask's count shift leaves modified_at), so it can be HOT."""
    return (
        f"UPDATE jobs AS j SET {shift} FROM (SELECT job_id, count(*) AS n"
        f" FROM {source} GROUP BY job_id) AS d WHERE j.id = d.job_id RETURNING j.id, j.uuid"
    )


def minimal_scripts(batch: int, variant: str) -> list[str]:
    """The pgbench script (one batch: a claim, then its completion) of jobtask's minimal
    shape, or one variant of it."""
    per_task = variant == "job-per-task"
    events = variant != "no-events"
    attempts = variant != "no-attempts"
    cast = {"payload-json": "json", "payload-text": "text"}.get(variant, "jsonb")
    ts = TS % "c.modified_at"
    claim = [
        "WITH picked AS (SELECT id, job_id FROM job_tasks"
        " WHERE status IN ('queued', 'soft-failed')"
        " ORDER BY status, id LIMIT :batch FOR UPDATE SKIP LOCKED)",
        "claimed AS (UPDATE job_tasks AS t SET status = 'active', version = t.version + 1,"
        " attempt = t.attempt + 1, modified_at = now(), started_at = now(),"
        " worker_id = :worker, node_name = :node, lease_id = :lease || t.id,"
        " lease_expires_at = now() + interval '30 seconds' FROM picked AS p WHERE t.id = p.id"
        " RETURNING t.id, t.uuid, t.job_id, t.version, t.attempt, t.lease_id, t.modified_at,"
        " t.lease_expires_at)",
    ]
    source = "claimed"
    if not per_task:
        claim.append(
            "counts AS ("
            + _counts("picked", "n_queued = j.n_queued - d.n, n_active = j.n_active + d.n")
            + ")"
        )
    if attempts:
        claim.append(
            "opened AS (INSERT INTO task_attempts (task_id, attempt, lease_id, worker_id,"
            " node_name, started_at, lease_expires_at) SELECT id, attempt, lease_id, :worker,"
            " :node, modified_at, lease_expires_at FROM claimed)"
        )
    if events:
        joined = "claimed AS c" if per_task else "claimed AS c JOIN counts AS j ON j.id = c.job_id"
        job_uuid = ":job_uuid" if per_task else "j.uuid"
        claim.append(
            "feed AS (INSERT INTO events (created_at, job_uuid, task_uuid, type, payload)"
            f" SELECT now(), {job_uuid}, c.uuid, 'task_changed', format(:claimed, c.id, c.uuid,"
            f" {ts}, c.version, {ts}, c.attempt, c.lease_id,"
            f" {TS % 'c.lease_expires_at'})::{cast} FROM {joined} ORDER BY c.id)"
        )
    claim_sql = (
        ",\n".join(claim) + f"\nSELECT coalesce(array_agg(id), '{{}}') AS ids FROM {source}\n\\gset"
    )
    done = [
        "WITH done AS (UPDATE job_tasks AS t SET status = 'completed', version = t.version + 1,"
        " progress = 1, success = true, finished_at = now(), modified_at = now(), log = :log,"
        " lease_id = NULL, lease_expires_at = NULL WHERE t.id = ANY(:ids::bigint[])"
        " AND t.status = 'active' AND t.lease_id = :lease || t.id"
        " RETURNING t.id, t.uuid, t.job_id, t.version, t.attempt, t.started_at, t.modified_at)",
    ]
    if not per_task:
        done.append(
            "counts AS ("
            + _counts("done", "n_active = j.n_active - d.n, n_completed = j.n_completed + d.n")
            + ")"
        )
    if attempts:
        done.append(
            "closed AS (UPDATE task_attempts AS a SET ended_at = now(), outcome = 'completed',"
            " exit_code = 0, lease_expires_at = NULL FROM done AS d WHERE a.task_id = d.id"
            " AND a.attempt = d.attempt AND a.ended_at IS NULL)"
        )
    if events:
        joined = "done AS c" if per_task else "done AS c JOIN counts AS j ON j.id = c.job_id"
        job_uuid = ":job_uuid" if per_task else "j.uuid"
        changed = (
            f"format(:completed, c.id, c.uuid, {ts}, c.version, {TS % 'c.started_at'},"
            f" {ts}, c.attempt)::{cast}"
        )
        if variant == "log-event":
            rows = (
                f"SELECT c.id, c.uuid, k.n, CASE k.n WHEN 1 THEN 'task_log' ELSE 'task_changed'"
                f" END AS type, CASE k.n WHEN 1 THEN format(:task_log, :log_json::text)::{cast}"
                f" ELSE {changed} END AS payload, {job_uuid} AS job_uuid FROM {joined}"
                " CROSS JOIN (VALUES (1), (2)) AS k(n)"
            )
            done.append(
                "feed AS (INSERT INTO events (created_at, job_uuid, task_uuid, type, payload)"
                f" SELECT now(), r.job_uuid, r.uuid, r.type, r.payload FROM ({rows}) AS r"
                " ORDER BY r.id, r.n)"
            )
        else:
            done.append(
                "feed AS (INSERT INTO events (created_at, job_uuid, task_uuid, type, payload)"
                f" SELECT now(), {job_uuid}, c.uuid, 'task_changed', {changed} FROM {joined}"
                " ORDER BY c.id)"
            )
    done_sql = ",\n".join(done) + "\nSELECT count(*) AS n FROM done;"
    if not per_task:
        return [claim_sql, done_sql]
    # The job's row first (its lock held for the transaction, as the events need), a
    # statement per task, then the batch's claim or completion.
    shift_claim = "UPDATE jobs SET n_queued = n_queued - 1, n_active = n_active + 1 WHERE id = 1;"
    shift_done = (
        "UPDATE jobs SET n_active = n_active - 1, n_completed = n_completed + 1 WHERE id = 1;"
    )
    return [
        "BEGIN;",
        *([shift_claim] * batch),
        claim_sql,
        "COMMIT;",
        "BEGIN;",
        *([shift_done] * batch),
        done_sql,
        "COMMIT;",
    ]


def _pgqueuer_statements(batch: int) -> tuple[str, str, str]:
    """PgQueuer's install SQL, dequeue and completion as its package renders them, the
    parameters turned into pgbench variables; the dequeue's rows aggregated to the ids."""
    from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment, QueryQueueBuilder
    from pgqueuer.domain.types import QueueEntrypoint, QueueManagerId

    builder = QueryQueueBuilder()
    dequeue = builder.build_dequeue_query(
        batch_size=batch,
        entrypoints=[QueueEntrypoint("noop")],
        concurrency_limits=[0],
        queue_manager_id=QueueManagerId(uuid.uuid4()),
        global_concurrency_limit=None,
        heartbeat_timeout=dt.timedelta(seconds=30),
    ).sql
    dequeue = dequeue.replace("ANY($2)", "ANY($2::text[])")
    for number, name in ((1, "batch"), (2, "eps"), (3, "qm"), (4, "hb")):
        dequeue = re.sub(rf"\${number}\b", f":{name}", dequeue)
    tail = "SELECT * FROM claimed ORDER BY priority DESC, id ASC;"
    if tail not in dequeue:
        raise RuntimeError("PgQueuer's dequeue changed shape: bench.floor needs a look")
    dequeue = dequeue.replace(tail, "SELECT coalesce(array_agg(id), '{}') AS ids FROM claimed")
    complete = builder.build_log_job_query()
    n = "ARRAY[cardinality(:ids::bigint[])]"
    complete = (
        complete.replace("$1::bigint[]", ":ids::bigint[]")
        .replace("$2::pgqueuer_status[]", f"array_fill('successful'::pgqueuer_status, {n})")
        .replace("$3::JSONB[]", f"array_fill(NULL::jsonb, {n})")
    )
    if "$" in complete:
        raise RuntimeError("PgQueuer's log_job changed shape: bench.floor needs a look")
    return QueryBuilderEnvironment().build_install_query(), dequeue + "\n\\gset", complete + ";"


# -- a run --------------------------------------------------------------------------------


@dataclass
class Figures:
    shape: str
    clients: int
    batch: int
    tasks: int
    seconds: float
    backend_cpu: float
    wal: int  # bytes, full page images apart
    fpi: int  # bytes of full page images
    by_relation: dict[str, int] = field(default_factory=dict)
    hot: tuple[int, int] = (0, 0)  # job_tasks: rows updated, of them HOT
    extra: str = ""

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds

    def row(self) -> str:
        per = 1e6 / self.tasks
        return (
            f"{self.shape:<22} {self.clients:>2} {self.batch:>4} {self.rate:>8,.0f}"
            f" {self.backend_cpu * per:>8,.0f} {self.wal / self.tasks:>7,.0f}"
            f" {self.fpi / self.tasks:>6,.0f}"
        )


HEADER = (
    f"{'shape':<22} {'c':>2} {'batch':>4} {'tasks/s':>8} {'cpu µs':>8} {'WAL B':>7} {'FPI B':>6}"
)


def _pg_env() -> dict[str, str]:
    """libpq's environment for pgbench (the password in the environment, never argv)."""
    url = make_url(postgres_admin_url())
    env = dict(os.environ)
    env.update(
        PGHOST=url.host or "127.0.0.1",
        PGPORT=str(url.port or 5432),
        PGUSER=url.username or "postgres",
    )
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return env


def _dsn(database: str) -> str:
    url = make_url(postgres_admin_url()).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def _database(template: str | None = None) -> AsyncIterator[str]:
    name = f"jobtask_floor_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(_dsn("postgres"))
    try:
        copy = f" TEMPLATE {template}" if template else ""
        await admin.execute(f"CREATE DATABASE {name}{copy}")
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await asyncpg.connect(_dsn("postgres"))
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


async def _migrated_template() -> str:
    """A database at jobtask's schema head (`jobtask db upgrade`), to copy per run."""
    name = f"jobtask_floor_tmpl_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(_dsn("postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = make_url(_dsn(name)).set(drivername="postgresql+asyncpg")
    proc = await asyncio.create_subprocess_exec(
        JOBTASK,
        "db",
        "upgrade",
        env={**os.environ, "JOBTASK_DATABASE_URL": url.render_as_string(hide_password=False)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"jobtask db upgrade failed: {err.decode()[-500:]}")
    return name


async def _drop(name: str) -> None:
    admin = await asyncpg.connect(_dsn("postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def _seed_jobtask(conn: Any, count: int, variant: str) -> None:
    if variant == "payload-json":
        await conn.execute("ALTER TABLE events ALTER COLUMN payload TYPE json")
    elif variant == "payload-text":
        await conn.execute("ALTER TABLE events ALTER COLUMN payload TYPE text")
    elif variant == "fillfactor":
        await conn.execute("ALTER TABLE job_tasks SET (fillfactor = 70)")
    elif variant == "lean-indexes":
        await conn.execute(
            "DROP INDEX ix_job_tasks_modified_at; DROP INDEX ix_job_tasks_lease_expires_at"
        )
    await conn.execute(
        "INSERT INTO jobs (id, uuid, owner_uuid, created_at, modified_at, modified_by_user_uuid,"
        " identity, priority, script, script_parameters, script_version, runtime_constraints,"
        " status, state, running, started_at, is_locked_by_uuid, n_queued) VALUES"
        " (1, $1, $2, now(), now(), $2, md5('floor'), 0, 'noop', '{}', 'main', '{}', 'active',"
        " 'Running', true, now(), $2, $3)",
        JOB_UUID,
        OWNER,
        count,
    )
    await conn.execute(
        "INSERT INTO job_tasks (uuid, job_id, job_uuid, owner_uuid, created_at, modified_at,"
        " modified_by_user_uuid, version, sequence, parameters, runtime_constraints,"
        " created_by_job_task_uuid, status) SELECT 'zzzzz-ot0gb-' || lpad(g::text, 15, '0'),"
        " 1, $1, $2, now(), now(), $2, 1, 1, '{}', '{}', 'zzzzz-ot0gb-105rsf7irifoge1',"
        " 'queued' FROM generate_series(1, $3) AS g",
        JOB_UUID,
        OWNER,
        count,
    )


async def _check_jobtask(conn: Any, count: int) -> str:
    row = await conn.fetchrow(
        "SELECT n_queued, n_active, n_completed,"
        " (SELECT count(*) FROM job_tasks WHERE status = 'completed') AS done,"
        " (SELECT count(*) FROM events) AS events,"
        " (SELECT count(*) FROM task_attempts WHERE outcome = 'completed') AS attempts"
        " FROM jobs WHERE id = 1"
    )
    if (row["n_queued"], row["n_active"], row["n_completed"], row["done"]) != (0, 0, count, count):
        raise RuntimeError(f"jobtask shape: not drained exactly: {dict(row)}")
    return f"{row['events'] / count:.0f} events a task, {row['attempts'] / count:.0f} attempts"


async def _seed_pgqueuer(conn: Any, count: int, install: str) -> None:
    await conn.execute(install)
    await conn.execute(
        "INSERT INTO pgqueuer (priority, entrypoint, payload, status)"
        " SELECT 0, 'noop', NULL, 'queued' FROM generate_series(1, $1)",
        count,
    )


async def _check_pgqueuer(conn: Any, count: int) -> str:
    left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
    done = await conn.fetchval("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
    if (left, done) != (0, count):
        raise RuntimeError(f"PgQueuer shape: {left} left, {done} of {count} logged")
    return "drained, each job logged picked and successful"


async def _wal(conn: Any, start: str, end: str) -> tuple[int, int, dict[str, int]]:
    """The WAL the database wrote between two LSNs: bytes apart from full page images,
    those images' bytes, and the bytes by relation (a record with several blocks counted
    for its first)."""
    oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
    names = {
        str(r["node"]): r["relname"]
        for r in await conn.fetch(
            "SELECT pg_relation_filenode(c.oid) AS node, c.relname FROM pg_class AS c"
            " WHERE pg_relation_filenode(c.oid) IS NOT NULL"
        )
    }
    rows = await conn.fetch(
        "SELECT xid, record_length, fpi_length, resource_manager, block_ref"
        " FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)",
        start,
        end,
    )
    mark = re.compile(rf"rel \d+/{oid}/(\d+)")
    ours: set[int] = set()
    wal = fpi = 0
    by: defaultdict[str, int] = defaultdict(int)
    for r in rows:
        found = mark.search(r["block_ref"] or "")
        if found:
            ours.add(int(r["xid"]))
    for r in rows:
        found = mark.search(r["block_ref"] or "")
        xid = int(r["xid"])
        if not found and not (xid and xid in ours and r["resource_manager"] == "Transaction"):
            continue
        length, image = int(r["record_length"]), int(r["fpi_length"])
        wal += length - image
        fpi += image
        name = names.get(found.group(1), "(other)") if found else "(commit records)"
        by[name] += length - image
    return wal, fpi, dict(sorted(by.items(), key=lambda item: item[1], reverse=True))


async def _pgbench(
    database: str,
    scripts: Sequence[str],
    clients: int,
    per_client: int,
    defines: dict[str, str],
    plans: str,
) -> tuple[float, str]:
    """Runs pgbench; the seconds it took (its own rate, without connection set-up)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="floor-", delete=False) as f:
        f.write("\n".join(scripts) + "\n")
        path = f.name
    args = [PGBENCH, "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients)]
    args += ["-t", str(per_client), "-f", path]
    for k, v in defines.items():
        args += ["-D", f"{k}={v}"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            database,
            env={**_pg_env(), "PGOPTIONS": f"-c plan_cache_mode={plans}"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    finally:
        os.unlink(path)
    text = out.decode()
    if proc.returncode:
        raise RuntimeError(f"pgbench failed: {err.decode()[-800:]}")
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    if not found or (failed and int(failed.group(1))):
        raise RuntimeError(f"pgbench: no rate, or failed transactions: {text[-800:]}")
    transactions = clients * per_client
    return transactions / float(found.group(1)), text


async def _measured(
    database: str, go: Callable[[], Any], count: int
) -> tuple[float, float, tuple[int, int, dict[str, int]], tuple[int, int]]:
    """Runs `go` on `database`: its seconds, the backends' CPU, the WAL, job_tasks's updates."""
    conn = await asyncpg.connect(_dsn(database))
    # A physical slot keeps the run's WAL from being recycled before it is read (the
    # server's other databases checkpoint at will); dropped right after.
    slot = f"{database}_wal"
    await conn.execute("SELECT pg_create_physical_replication_slot($1, true)", slot)
    try:
        start = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        hot0 = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'job_tasks'"
        )
        backend = PostgresCpu(database)
        backend.start()
        seconds = await go()
        cpu = backend.stop()
        end = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        await conn.execute("SELECT pg_stat_force_next_flush()")
        wal = await _wal(conn, start, end)
        await asyncio.sleep(0.6)  # the statistics collector's flush of the run's backends
        hot1 = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'job_tasks'"
        )
    finally:
        await conn.execute("SELECT pg_drop_replication_slot($1)", slot)
        await conn.close()
    hot = (0, 0)
    if hot0 and hot1:
        hot = (hot1[0] - hot0[0], hot1[1] - hot0[1])
    return float(seconds), cpu, wal, hot


async def pgbench_shape(
    shape: str, count: int, clients: int, batch: int, template: str | None
) -> Figures:
    """One run of a pgbench shape ("pgqueuer", "minimal" or "minimal:<variant>")."""
    if count % (clients * batch):
        raise ValueError(f"{count} tasks do not split into {clients} clients x {batch}")
    per_client = count // (clients * batch)
    kind, _, variant = shape.partition(":")
    async with _database(None if kind == "pgqueuer" else template) as database:
        conn = await asyncpg.connect(_dsn(database))
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            if kind == "pgqueuer":
                install, dequeue, complete = _pgqueuer_statements(batch)
                await _seed_pgqueuer(conn, count, install)
                scripts: list[str] = [dequeue, complete]
                defines = {"batch": str(batch), "eps": "{noop}", "qm": str(uuid.uuid4())}
                defines["hb"] = "30 seconds"
            else:
                await _seed_jobtask(conn, count, variant)
                scripts = minimal_scripts(batch, variant)
                if variant == "generic-inline":  # the batch size in the text, not a parameter
                    scripts = [x.replace(":batch", str(batch)) for x in scripts]
                defines = {
                    "batch": str(batch),
                    "worker": WORKER,
                    "node": NODE,
                    "lease": "6b3b08c22137752b4d3441477545",
                    "log": LOG,
                    "job_uuid": JOB_UUID,
                    "claimed": CLAIMED,
                    "completed": COMPLETED,
                    "task_log": TASK_LOG,
                    "log_json": LOG.replace("\n", "\\n"),
                }
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()

        async def go() -> float:
            generic = variant in ("generic-plan", "generic-inline")
            plans = "force_generic_plan" if generic else "force_custom_plan"
            seconds, _ = await _pgbench(database, scripts, clients, per_client, defines, plans)
            return seconds

        seconds, cpu, (wal, fpi, by), hot = await _measured(database, go, count)
        conn = await asyncpg.connect(_dsn(database))
        try:
            if kind == "pgqueuer":
                extra = await _check_pgqueuer(conn, count)
            else:
                extra = await _check_jobtask(conn, count)
        finally:
            await conn.close()
    return Figures(shape, clients, batch, count, seconds, cpu, wal, fpi, by, hot, extra)


async def today(count: int) -> Figures:
    """jobtask's own statements for a fan-out of `count` tasks (one worker), recorded and
    replayed in commit order on one asyncpg connection, the store's session settings."""
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        path = os.path.join(tmp, "statements.pickle")
        seen = throughput.Observed(server_args=("--capture", path))
        log(f"floor: jobtask on postgres, fan-out of {count:,} tasks, statements recorded")
        await throughput.jobtask_fanout("postgres", count, 1, seen)
        before, inside = capture.split(capture.load(path), seen.window)
    async with _database() as database:
        conn = await asyncpg.connect(_dsn(database), server_settings=SESSION_SETTINGS)
        spent: capture.Spent = defaultdict(float)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            for txn in before:
                await capture._pg_run(conn, txn, spent)
            spent.clear()

            async def go() -> float:
                start = time.perf_counter()
                for txn in inside:
                    await capture._pg_run(conn, txn, spent)
                return time.perf_counter() - start

            seconds, cpu, (wal, fpi, by), hot = await _measured(database, go, count)
        finally:
            await conn.close()
    statements = sum(len(t.statements) for t in inside)
    items = "; ".join(
        f"{100 * t / seconds:.0f}% «{head} …»" for head, t in capture.costliest(spent, 6)
    )
    extra = (
        f"{len(inside) / count:.3f} transactions, {statements / count:.2f} statements a task;"
        f" the replay's time by statement: {items}"
    )
    return Figures("today (replayed)", 1, 0, count, seconds, cpu, wal, fpi, by, hot, extra)


# -- the benchmark ------------------------------------------------------------------------


def _result(f: Figures, peer: Figures | None) -> Result:
    per = 1e6 / f.tasks
    top = ", ".join(f"{name} {b / f.tasks:,.0f}" for name, b in list(f.by_relation.items())[:8])
    updated, hot = f.hot
    note = (
        f"backend CPU {f.backend_cpu * per:,.0f} µs/task; WAL {f.wal / f.tasks:,.0f} B/task"
        f" (+ full page images {f.fpi / f.tasks:,.0f}); WAL B/task by relation: {top};"
        f" job_tasks rows updated {updated:,} ({hot:,} HOT); {f.extra}"
    )
    batch = f" batch {f.batch}" if f.batch else ""
    return Result(
        "floor postgres alone",
        f"{f.shape}, {f.clients} client(s){batch}, {f.tasks:,} tasks",
        "tasks/s",
        f.rate,
        f"{peer.shape} {peer.clients} client(s) batch {peer.batch}" if peer else "",
        peer.rate if peer else None,
        note=note,
    )


async def figures(
    count: int,
    shapes: Sequence[str],
    clients: Sequence[int],
    batches: Sequence[int],
    with_today: bool,
) -> list[Figures]:
    template = await _migrated_template()
    out: list[Figures] = []
    try:
        for shape in shapes:
            runs = VARIANT_RUNS if ":" in shape else [(c, b) for b in batches for c in clients]
            for c, b in runs:
                if c not in clients and ":" not in shape:
                    continue
                log(f"floor: {shape}, {c} client(s), batch {b}, {count:,} tasks")
                out.append(await pgbench_shape(shape, count, c, b, template))
    finally:
        await _drop(template)
    if with_today:
        out.append(await today(count))
    return out


async def run(cfg: Config) -> list[Result]:
    count = cfg.pick(TASKS, 200)
    clients = cfg.pick(CLIENTS, (1, 2))
    batches = cfg.pick(BATCHES, (10,))
    # PgQueuer's shape needs its package (the `bench` extra) to render its statements.
    peer = ["pgqueuer"] if importlib.util.find_spec("pgqueuer") is not None else []
    if not peer:
        log("floor: pgqueuer is not installed (the bench extra): its shape is left out")
    shapes = [*peer, "minimal"] + (
        [f"minimal:{v}" for v in VARIANTS] if not cfg.smoke else ["minimal:log-event"]
    )
    found = await figures(count, shapes, clients, batches, with_today=True)
    peers = {(f.clients, f.batch): f for f in found if f.shape == "pgqueuer"}
    return [_result(f, peers.get((f.clients, f.batch))) for f in found]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--tasks", type=int, default=TASKS)
    parser.add_argument("--shapes", default="pgqueuer,minimal", help="comma-separated")
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--batches", default="10,100")
    parser.add_argument("--today", action="store_true", help="also replay jobtask's own")
    args = parser.parse_args()
    found = asyncio.run(
        figures(
            args.tasks,
            args.shapes.split(","),
            [int(c) for c in args.clients.split(",")],
            [int(b) for b in args.batches.split(",")],
            args.today,
        )
    )
    print(HEADER)
    for f in found:
        print(f.row())
    print()
    for f in found:
        print(_result(f, None).metric + ": " + _result(f, None).note)


if __name__ == "__main__":
    main()
