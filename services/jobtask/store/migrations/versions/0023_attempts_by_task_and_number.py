"""An attempt is found by its task and number: one index of task_attempts fewer

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05

Each claim inserts a task_attempts row, and each row went into three indexes besides its
primary key: the unique lease id, the task id, and the registry's (worker_id, outcome).
The lease id was the key the end of the attempt closed it by, and nothing else looks an
attempt up by it. A task's attempts are numbered by its claims (job_tasks.attempt, raised
by one at each claim under the job's lock, never reset: a requeue or a restart resets the
failure count, not the attempt number), so (task_id, attempt) identifies an attempt too.

- uq_task_attempts_task_id_attempt (task_id, attempt), unique, replaces both: the lease's
  close probes it by its whole key, a task's or job's attempts read it by its prefix
  (task_id), as they read ix_task_attempts_task_id.
- uq_task_attempts_lease_id goes. The lease id stays a column: the record of which lease
  the attempt ran under (lease ids are random, 128 bits: still unique in practice).

A database with attempts upgrades as it is: no two attempts of one task share a number
(each claim numbered its attempt one past the task's last). Should a database have some
all the same (rows written by hand, or by a tool of its own), the upgrade stops before it
changes anything and names them, rather than failing on the new index's unique violation.
On SQLite, dropping the unique constraint copies the table (Alembic's batch mode); on
PostgreSQL the new index is built while the table is locked against writes, as every index
this chain creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from jobtask.domain.errors import FailedPrecondition

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


# Tasks named in the refusal at most.
SHOWN = 5


def upgrade() -> None:
    shared = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT t.uuid, a.attempt, count(*) FROM task_attempts a"
                " JOIN job_tasks t ON t.id = a.task_id"
                " GROUP BY t.uuid, a.attempt HAVING count(*) > 1 ORDER BY t.uuid, a.attempt"
            )
        )
        .all()
    )
    if shared:
        named = ", ".join(f"{uuid} attempt {n} ({count} rows)" for uuid, n, count in shared[:SHOWN])
        more = f" and {len(shared) - SHOWN} more" if len(shared) > SHOWN else ""
        raise FailedPrecondition(
            "schema revision 0023 keys a task's attempts by (task, attempt number), and "
            f"{len(shared)} task attempt number(s) are held by more than one row: {named}{more}."
            " Nothing was changed. Renumber those rows of task_attempts (each task's "
            "attempts 1, 2, ... in the order they ran) and run the upgrade again."
        )
    with op.batch_alter_table("task_attempts") as batch_op:
        batch_op.create_index(
            "uq_task_attempts_task_id_attempt", ["task_id", "attempt"], unique=True
        )
        batch_op.drop_index("ix_task_attempts_task_id")
        batch_op.drop_constraint("uq_task_attempts_lease_id", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("task_attempts") as batch_op:
        batch_op.create_unique_constraint("uq_task_attempts_lease_id", ["lease_id"])
        batch_op.create_index("ix_task_attempts_task_id", ["task_id"], unique=False)
        batch_op.drop_index("uq_task_attempts_task_id_attempt")
