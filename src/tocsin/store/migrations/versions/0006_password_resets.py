"""One-time password reset links: an administrator issues one, the user sets her own password.
E-mail subscriptions remember when their confirmation was last sent (one per address an hour).

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
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("confirm_sent_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("confirm_sent_at")
    op.drop_table("password_resets")
