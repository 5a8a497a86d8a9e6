"""Authority access: users, tokens, sessions, approval workflow and pending cancellations.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from tocsin.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("declarations") as batch:
        batch.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("submitted_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("break_glass", sa.Text, nullable=True))
        batch.add_column(sa.Column("rejected_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("rejected_by", sa.Text, nullable=True))
        batch.add_column(sa.Column("rejected_reason", sa.Text, nullable=True))
    op.create_table(
        "cancel_requests",
        sa.Column("declaration_id", sa.String(40), sa.ForeignKey(
            "declarations.id", name="fk_cancel_requests_declaration_id_declarations"),
            nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("declaration_id", name="pk_cancel_requests"),
    )
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("jurisdiction", sa.JSON, nullable=False),
        sa.Column("break_glass", sa.Boolean, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("locked_until", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_users"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_name", sa.String(64), sa.ForeignKey(
            "users.name", name="fk_tokens_user_name_users"), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("last_used_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
    )
    op.create_index("ix_tokens_user_name", "tokens", ["user_name"])
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(64), sa.ForeignKey(
            "users.name", name="fk_sessions_user_name_users"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_sessions"),
    )
    op.create_index("ix_sessions_user_name", "sessions", ["user_name"])


def downgrade() -> None:
    op.drop_table("sessions")
    op.drop_table("tokens")
    op.drop_table("users")
    op.drop_table("cancel_requests")
    with op.batch_alter_table("declarations") as batch:
        for column in ("rejected_reason", "rejected_by", "rejected_at", "break_glass",
                       "submitted_at", "revision"):
            batch.drop_column(column)
