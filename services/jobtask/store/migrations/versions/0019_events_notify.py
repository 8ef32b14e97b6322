"""PostgreSQL: inserting events notifies the other processes (a statement trigger)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05

A write transaction that appended events sent its own NOTIFY, a round trip made while it held
its jobs' row locks. The trigger sends it from the INSERT itself (delivered at commit, once
per transaction however many statements insert: PostgreSQL folds equal notifications).
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# jobtask.store.database.NOTIFY_CHANNEL, as it was when this revision was written.
_CHANNEL = "jobtask_events"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION jobtask_events_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{_CHANNEL}', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER events_notify AFTER INSERT ON events
        FOR EACH STATEMENT EXECUTE FUNCTION jobtask_events_notify()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS events_notify ON events")
    op.execute("DROP FUNCTION IF EXISTS jobtask_events_notify()")
