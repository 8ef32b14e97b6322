"""auth: users and API tokens (api_client_authorizations)

Revision ID: 0010
Revises: 0001
Create Date: 2026-11-21 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uuid", sa.String(length=27), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("uuid", name=op.f("uq_users_uuid")),
    )
    op.create_table(
        "api_client_authorizations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uuid", sa.String(length=27), nullable=False),
        sa.Column("owner_uuid", sa.String(length=27), nullable=False),
        sa.Column("secret_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_by_user_uuid", sa.String(length=27), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_uuid"],
            ["users.uuid"],
            name=op.f("fk_api_client_authorizations_owner_uuid_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_client_authorizations")),
        sa.UniqueConstraint(
            "secret_digest", name=op.f("uq_api_client_authorizations_secret_digest")
        ),
        sa.UniqueConstraint("uuid", name=op.f("uq_api_client_authorizations_uuid")),
    )
    with op.batch_alter_table("api_client_authorizations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_client_authorizations_owner_uuid"), ["owner_uuid"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("api_client_authorizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_client_authorizations_owner_uuid"))
    op.drop_table("api_client_authorizations")
    op.drop_table("users")
