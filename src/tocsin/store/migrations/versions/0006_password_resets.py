"""One-time password reset links: an administrator issues one, the user sets her own password.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from tocsin.store.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "password_resets",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(64), sa.ForeignKey(
            "users.name", name="fk_password_resets_user_name_users"), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("used_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id_hash", name="pk_password_resets"),
    )
    op.create_index("ix_password_resets_user_name", "password_resets", ["user_name"])


def downgrade() -> None:
    op.drop_table("password_resets")
