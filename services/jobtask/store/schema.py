"""The tables, as SQLAlchemy Core metadata. Alembic migrations (store/migrations) create them.

Hash attributes are JSON (JSONB on PostgreSQL, so `exists` filters can use it); event payloads
are plain JSON on both. Task status
counts are kept on the job row, in the same transaction as every task change, so ripple
decisions and tasks_summary never scan a job's tasks.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON().with_variant(JSONB(), "postgresql")
# BIGINT primary keys autoincrement on PostgreSQL; SQLite wants INTEGER for its rowid alias.
Id = BigInteger().with_variant(Integer(), "sqlite")
Time = DateTime(timezone=True)

TASK_STATUS_COUNTS = (
    "n_queued",
    "n_active",
    "n_completed",
    "n_soft_failed",
    "n_failed",
    "n_canceled",
    "n_paused",
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("uuid", String(27), nullable=False, unique=True),
    Column("owner_uuid", String(27), nullable=False),
    Column("created_at", Time, nullable=False),
    Column("modified_at", Time, nullable=False),
    Column("modified_by_client_uuid", String(27)),
    Column("modified_by_user_uuid", String(27)),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("submit_id", String(255), unique=True),
    Column("submit_digest", String(64)),
    Column("identity", String(64), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("script", String(255), nullable=False),
    Column("script_parameters", Json, nullable=False),
    Column("script_version", String(255), nullable=False),
    Column("repository", String(255)),
    Column("runtime_constraints", Json, nullable=False),
    Column("status", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("running", Boolean, nullable=False, server_default="0"),
    Column("success", Boolean),
    Column("cancelled_by_client_uuid", String(27)),
    Column("cancelled_by_user_uuid", String(27)),
    Column("cancelled_at", Time),
    Column("started_at", Time),
    Column("finished_at", Time),
    Column("is_locked_by_uuid", String(27)),
    Column("output", Text),
    Column("log", Text),
    *(Column(name, Integer, nullable=False, server_default="0") for name in TASK_STATUS_COUNTS),
    # Why the job failed (its first failed task's reason), and its blocklist: a JSON list of
    # {worker_id, failed_tasks, added_at}. Both cleared by requeue.
    Column("failure_reason", Json),
    Column("blocklist", Json),
    # The claims' probe for the next priority level (store.claims._next_level, its prefix)
    # and fair share's walk from owner to owner of a priority level (store.claims.owners).
    Index("ix_jobs_fair", "status", "priority", "owner_uuid", "id"),
    Index("ix_jobs_identity", "identity"),
    Index("ix_jobs_modified_at", "modified_at"),
    Index("ix_jobs_owner_uuid", "owner_uuid"),
)

# The rows of job_tasks' partial indexes. _NOT_RUNNING_OR_DONE is an OR of equalities, not
# `status NOT IN ('active', 'completed')`: SQLite proves it from `status = 'queued'` (or
# from `status = ?` bound to a status it names), and a NOT IN from nothing. A new task
# status is added here if lookups by it need the index.
_NOT_RUNNING_OR_DONE = (
    "status = 'queued' OR status = 'soft-failed' OR status = 'failed'"
    " OR status = 'canceled' OR status = 'paused'"
)
_WAITING = "status IN ('queued', 'soft-failed')"
_CREATED = "created_by_job_task_uuid IS NOT NULL"
_LEASED = "lease_expires_at IS NOT NULL"
_TOKENED = "token_digest IS NOT NULL"

job_tasks = Table(
    "job_tasks",
    metadata,
    # qsequence (order of arrival, 0-based) is id - 1.
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("uuid", String(27), nullable=False, unique=True),
    Column("job_id", ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("job_uuid", String(27), nullable=False),
    Column("owner_uuid", String(27), nullable=False),
    Column("created_at", Time, nullable=False),
    Column("modified_at", Time, nullable=False),
    Column("modified_by_client_uuid", String(27)),
    Column("modified_by_user_uuid", String(27)),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("sequence", Integer, nullable=False, server_default="0"),
    Column("parameters", Json, nullable=False),
    Column("runtime_constraints", Json, nullable=False),
    Column("created_by_job_task_uuid", String(27)),
    Column("status", String(32), nullable=False),
    Column("output", Text),
    Column("progress", Float, nullable=False, server_default="0"),
    Column("success", Boolean),
    Column("failed_count", Integer, nullable=False, server_default="0"),
    Column("failed_at", Time),
    Column("failed_log", Text),
    Column("log", Text),
    Column("started_at", Time),
    Column("finished_at", Time),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("worker_id", String(255)),
    Column("node_name", String(255)),
    Column("lease_id", String(64)),
    Column("lease_expires_at", Time),
    # SHA-256 of the token given to the task's process for this lease.
    Column("token_digest", LargeBinary(32)),
    # Retry backoff: a soft-failed task is not claimed before this time.
    Column("runnable_after", Time),
    # Why the task failed for good (rule, exit status, log tail).
    Column("failure_reason", Json),
    Index("ix_job_tasks_job_id_sequence", "job_id", "sequence", "status"),
    # A job's active tasks, by node (placement's per-node counts). Not (job_id, status):
    # a claim's check of a task's lower sequences (job_id = ? AND sequence < ? AND status
    # != 'completed') must find only (job_id, sequence, status), the index that reads no
    # more than the lower sequences. Offered both, a plan made while the table was small
    # (a cached generic plan keeps it) took (job_id, status) and read every task of the
    # job for each candidate. Its status column makes it cover a count of active tasks
    # (ListTasks status=active): SQLite (3.40) otherwise counted them by a walk of every
    # task's (job_id, sequence, status), the status index leaving active tasks out. Not
    # the worker's column: PostgreSQL 15 made `worker_id = ANY(...)` on it an index
    # condition, one pass over the whole index per worker named (the registry's read).
    Index(
        "ix_job_tasks_active_job_id",
        "job_id",
        "node_name",
        "status",
        postgresql_where=text("status = 'active'"),
        sqlite_where=text("status = 'active'"),
    ),
    # Partial indexes hold only the rows their lookups can find: every task write inserts
    # into each index that holds its new version (on PostgreSQL a status change is never a
    # HOT update, so into every index; on SQLite into each index whose key or condition it
    # changes), so each one left out is work saved per write. SQLite uses a partial index
    # only when it can prove the query's WHERE implies the index's: `x IS NOT NULL` from a
    # comparison of x, a condition from the same text in the query, an OR from one of its
    # terms (tests/core/test_index_plans.py pins each lookup's index on both stores).
    Index(
        "ix_job_tasks_created_by",
        "created_by_job_task_uuid",
        postgresql_where=text(_CREATED),
        sqlite_where=text(_CREATED),
    ),
    # Claims walk each waiting status in order of arrival (store.claims.candidates);
    # listings filter on the other statuses a task ends in. Not active or completed tasks,
    # which a task is in at its last two writes.
    Index(
        "ix_job_tasks_status_id",
        "status",
        "id",
        postgresql_where=text(_NOT_RUNNING_OR_DONE),
        sqlite_where=text(_NOT_RUNNING_OR_DONE),
    ),
    # Fair share walks one owner's waiting tasks of one status in order of arrival.
    # Only waiting tasks (the pages name their status as a constant, so that even a
    # cached generic plan can use it).
    Index(
        "ix_job_tasks_status_owner_uuid_id",
        "status",
        "owner_uuid",
        "id",
        postgresql_where=text(_WAITING),
        sqlite_where=text(_WAITING),
    ),
    # Only tasks holding a lease (the reaper's lookup).
    Index(
        "ix_job_tasks_lease_expires_at",
        "lease_expires_at",
        postgresql_where=text(_LEASED),
        sqlite_where=text(_LEASED),
    ),
    # Every call made with a task's own token looks the task up by its token's digest.
    Index(
        "ix_job_tasks_token_digest",
        "token_digest",
        postgresql_where=text(_TOKENED),
        sqlite_where=text(_TOKENED),
    ),
    Index("ix_job_tasks_modified_at", "modified_at"),
)

# Which workers failed which task: a task is not given again to a worker that failed it
# while another capable worker exists (Flamenco's per-worker failure memory).
task_failures = Table(
    "task_failures",
    metadata,
    Column("task_id", ForeignKey("job_tasks.id", ondelete="CASCADE"), nullable=False),
    Column("worker_id", String(255), nullable=False),
    Column("failed_at", Time, nullable=False),
    UniqueConstraint("task_id", "worker_id"),
)

# Every attempt to run a task, for the record (and to prove no task ran twice at once).
task_attempts = Table(
    "task_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", ForeignKey("job_tasks.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    # The lease it ran under (the chaos history matches it with the feed's claims); no
    # lookup goes by it: an attempt is closed by its (task_id, attempt) (revision 0023).
    Column("lease_id", String(64), nullable=False),
    Column("worker_id", String(255), nullable=False),
    Column("node_name", String(255), nullable=False),
    Column("started_at", Time, nullable=False),
    Column("ended_at", Time),
    Column("outcome", String(32)),
    # The process's exit status or signal, when its worker reported one.
    Column("exit_code", Integer),
    Column("signal", Integer),
    # When the attempt's lease expired as last renewed before the attempt ended: a
    # process that ended after it ran without a live lease (the chaos history checks it).
    Column("lease_expires_at", Time),
    # A task's attempts are numbered 1, 2, ... by its claims (job_tasks.attempt, never
    # reset): the key the lease close probes, and a task's or job's attempts by its prefix.
    Index("uq_task_attempts_task_id_attempt", "task_id", "attempt", unique=True),
    # The registry counts each worker's finished and failed attempts.
    Index("ix_task_attempts_worker_id_outcome", "worker_id", "outcome"),
)

# The change feed: one row per state change, written in the change's transaction.
events = Table(
    "events",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),
    Column("created_at", Time, nullable=False),
    Column("job_uuid", String(27), nullable=False),
    Column("task_uuid", String(27)),
    Column("type", String(32), nullable=False),
    # JSON, not JSONB, on PostgreSQL too (revision 0024): the payload is written once and read
    # back whole, never queried inside, so it is kept as the text it came as -- checked, not
    # parsed into JSONB's binary form at every insert (about 3 of 10 us an event's insert
    # cost PostgreSQL) nor printed back from it at every read.
    Column("payload", JSON, nullable=False),
    Index("ix_events_job_uuid_seq", "job_uuid", "seq"),
)

# The worker registry (min_nodes counts live nodes here). Each claim records the worker's
# description; heartbeats refresh last_seen_at; a clean shutdown sets stopped_at.
workers = Table(
    "workers",
    metadata,
    Column("worker_id", String(255), primary_key=True),
    Column("node_name", String(255), nullable=False),
    Column("ram_kib", BigInteger, nullable=False, server_default="0"),
    Column("cores", Integer, nullable=False, server_default="0"),
    Column("last_seen_at", Time, nullable=False),
    # issue 17: the registry.
    Column("tags", Json, nullable=False, server_default="[]"),
    Column("slots", Integer, nullable=False, server_default="0"),
    Column("first_seen_at", Time),
    Column("stopped_at", Time),
)

# Small settings the system keeps across restarts (the feed's pruning watermark, ...).
settings = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# -- auth (issue 5) ---------------------------------------------------------------------------

# Users (`<cluster>-tpzed-...`). The system user `<cluster>-tpzed-000000000000000` is created
# on first use; its tokens act as the job manager itself.
users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("uuid", String(27), nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False, server_default="0"),
    Column("created_at", Time, nullable=False),
    Column("modified_at", Time, nullable=False),
)

# API tokens (`<cluster>-gj3su-...`). Only the SHA-256 of the secret is kept.
api_client_authorizations = Table(
    "api_client_authorizations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("uuid", String(27), nullable=False, unique=True),
    Column("owner_uuid", ForeignKey("users.uuid", ondelete="CASCADE"), nullable=False, index=True),
    Column("secret_digest", LargeBinary(32), nullable=False, unique=True),
    # A JSON list: ["all"], or "METHOD /path" entries.
    Column("scopes", Json, nullable=False),
    Column("expires_at", Time),
    Column("revoked_at", Time),
    Column("created_at", Time, nullable=False),
    Column("modified_at", Time, nullable=False),
    Column("modified_by_user_uuid", String(27)),
)
