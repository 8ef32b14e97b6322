"""jobs: an index for fair share's walk over a priority level's owners

Revision ID: 0021
Revises: 0019
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_fair", "jobs", ["status", "priority", "owner_uuid", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_fair", table_name="jobs")
