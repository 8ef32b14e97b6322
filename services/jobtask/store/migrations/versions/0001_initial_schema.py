"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 05:29:00.523243
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_uuid", sa.String(length=27), nullable=False),
        sa.Column("task_uuid", sa.String(length=27), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_job_uuid_seq", ["job_uuid", "seq"], unique=False)

    op.create_table(
        "jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uuid", sa.String(length=27), nullable=False),
        sa.Column("owner_uuid", sa.String(length=27), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_by_client_uuid", sa.String(length=27), nullable=True),
        sa.Column("modified_by_user_uuid", sa.String(length=27), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("submit_id", sa.String(length=255), nullable=True),
        sa.Column("submit_digest", sa.String(length=64), nullable=True),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("script", sa.String(length=255), nullable=False),
        sa.Column(
            "script_parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("script_version", sa.String(length=255), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=True),
        sa.Column(
            "runtime_constraints",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("running", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("success", sa.Boolean(), nullable=True),
        sa.Column("cancelled_by_client_uuid", sa.String(length=27), nullable=True),
        sa.Column("cancelled_by_user_uuid", sa.String(length=27), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("is_locked_by_uuid", sa.String(length=27), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("log", sa.Text(), nullable=True),
        sa.Column("n_queued", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_active", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_completed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_soft_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_canceled", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_paused", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("submit_id", name=op.f("uq_jobs_submit_id")),
        sa.UniqueConstraint("uuid", name=op.f("uq_jobs_uuid")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_identity", ["identity"], unique=False)
        batch_op.create_index("ix_jobs_modified_at", ["modified_at"], unique=False)
        batch_op.create_index("ix_jobs_owner_uuid", ["owner_uuid"], unique=False)
        batch_op.create_index("ix_jobs_queue", ["status", "priority", "created_at"], unique=False)

    op.create_table(
        "settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_settings")),
    )
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(length=255), nullable=False),
        sa.Column("node_name", sa.String(length=255), nullable=False),
        sa.Column("ram_kib", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cores", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_workers")),
    )
    op.create_table(
        "job_tasks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uuid", sa.String(length=27), nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job_uuid", sa.String(length=27), nullable=False),
        sa.Column("owner_uuid", sa.String(length=27), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_by_client_uuid", sa.String(length=27), nullable=True),
        sa.Column("modified_by_user_uuid", sa.String(length=27), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("sequence", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "runtime_constraints",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_by_job_task_uuid", sa.String(length=27), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("progress", sa.Float(), server_default="0", nullable=False),
        sa.Column("success", sa.Boolean(), nullable=True),
        sa.Column("failed_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_log", sa.Text(), nullable=True),
        sa.Column("log", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("worker_id", sa.String(length=255), nullable=True),
        sa.Column("node_name", sa.String(length=255), nullable=True),
        sa.Column("lease_id", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token_digest", sa.LargeBinary(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_tasks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_tasks")),
        sa.UniqueConstraint("uuid", name=op.f("uq_job_tasks_uuid")),
    )
    with op.batch_alter_table("job_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_job_tasks_claimable", ["status", "job_id", "id"], unique=False)
        batch_op.create_index("ix_job_tasks_created_by", ["created_by_job_task_uuid"], unique=False)
        batch_op.create_index(
            "ix_job_tasks_job_id_sequence", ["job_id", "sequence", "status"], unique=False
        )
        batch_op.create_index("ix_job_tasks_job_id_status", ["job_id", "status"], unique=False)
        batch_op.create_index("ix_job_tasks_lease_expires_at", ["lease_expires_at"], unique=False)
        batch_op.create_index("ix_job_tasks_modified_at", ["modified_at"], unique=False)

    op.create_table(
        "task_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lease_id", sa.String(length=64), nullable=False),
        sa.Column("worker_id", sa.String(length=255), nullable=False),
        sa.Column("node_name", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["job_tasks.id"],
            name=op.f("fk_task_attempts_task_id_job_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_attempts")),
        sa.UniqueConstraint("lease_id", name=op.f("uq_task_attempts_lease_id")),
    )
    with op.batch_alter_table("task_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_task_attempts_task_id", ["task_id"], unique=False)

    op.create_table(
        "task_failures",
        sa.Column("task_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("worker_id", sa.String(length=255), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["job_tasks.id"],
            name=op.f("fk_task_failures_task_id_job_tasks"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "task_id", "worker_id", name=op.f("uq_task_failures_task_id_worker_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("task_failures")
    with op.batch_alter_table("task_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_task_attempts_task_id")

    op.drop_table("task_attempts")
    with op.batch_alter_table("job_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_job_tasks_modified_at")
        batch_op.drop_index("ix_job_tasks_lease_expires_at")
        batch_op.drop_index("ix_job_tasks_job_id_status")
        batch_op.drop_index("ix_job_tasks_job_id_sequence")
        batch_op.drop_index("ix_job_tasks_created_by")
        batch_op.drop_index("ix_job_tasks_claimable")

    op.drop_table("job_tasks")
    op.drop_table("workers")
    op.drop_table("settings")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_queue")
        batch_op.drop_index("ix_jobs_owner_uuid")
        batch_op.drop_index("ix_jobs_modified_at")
        batch_op.drop_index("ix_jobs_identity")

    op.drop_table("jobs")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_job_uuid_seq")

    op.drop_table("events")
