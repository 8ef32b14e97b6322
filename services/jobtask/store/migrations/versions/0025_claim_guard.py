"""PostgreSQL: a function that counts the tasks no longer runnable, for the guarded claim

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07

A claim that takes its tasks in ONE statement (jobtask.manager.claims, the guarded claim)
locks their jobs' rows inside that statement. A statement reads the database as it was when
the statement began, so a task created under a job's lock while the claim waited for that
lock (a lower sequence, which the claim's tasks must now wait for) is not in what the
statement reads. This function runs its query with a snapshot of its own, taken when it is
called (a VOLATILE function's queries each take one; plpgsql is never inlined into the
caller): called once the claim's locks are held, it sees every change committed under them.

It counts the tasks, of those given, that a task of their job with a lower sequence has not
completed, or whose creator has not completed: the two conditions of
jobtask.store.claims.runnable_tasks that read other rows than the task's and its job's
(tests/core/test_claim_guard.py holds the two to the same answers). `held` is the number of
rows the caller locked, passed only so that the locks are taken before the call.
"""

from __future__ import annotations

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION jobtask_unrunnable(task_ids bigint[], held bigint)
        RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            RETURN (
                SELECT count(*) FROM job_tasks AS t
                WHERE t.id = ANY(task_ids)
                AND (
                    EXISTS (
                        SELECT 1 FROM job_tasks AS earlier
                        WHERE earlier.job_id = t.job_id AND earlier.sequence < t.sequence
                        AND earlier.status != 'completed'
                    )
                    OR (
                        t.created_by_job_task_uuid IS NOT NULL
                        AND NOT EXISTS (
                            SELECT 1 FROM job_tasks AS parent
                            WHERE parent.uuid = t.created_by_job_task_uuid
                            AND (parent.status = 'completed') IS TRUE
                            OFFSET 0
                        )
                    )
                )
            );
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS jobtask_unrunnable(bigint[], bigint)")
