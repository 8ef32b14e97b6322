"""task attempts keep the process's exit code or signal

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_attempts") as batch_op:
        batch_op.add_column(sa.Column("exit_code", sa.Integer()))
        batch_op.add_column(sa.Column("signal", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("task_attempts") as batch_op:
        batch_op.drop_column("signal")
        batch_op.drop_column("exit_code")
