"""Notifications: subscriptions, deliveries with their attempts, the levels last announced,
the term-change schedule and reminders; outbox events are marked once fanned out; users get
an e-mail address for reminders.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from tocsin.store.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SERIAL = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("fanned_out_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("fanned_out_to", sa.String(40), nullable=True))
    # Events written before notifications existed have no one to go to.
    op.execute("UPDATE outbox SET fanned_out_at = created_at")
    op.create_index("ix_outbox_pending", "outbox", ["fanned_out_at", "id"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email", sa.Text, nullable=True))
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("confirmed_at", UTCDateTime, nullable=True),
        sa.Column("disabled_at", UTCDateTime, nullable=True),
        sa.Column("disabled_reason", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
    )
    op.create_index("ix_subscriptions_channel_target", "subscriptions", ["channel", "target"])
    for name, column in (("subscription_areas", "area_code"), ("subscription_schemes", "scheme")):
        op.create_table(
            name,
            sa.Column("subscription_id", sa.String(40), sa.ForeignKey(
                "subscriptions.id", name=f"fk_{name}_subscription_id_subscriptions"),
                nullable=False),
            sa.Column(column, sa.String(64), nullable=False),
            sa.PrimaryKeyConstraint("subscription_id", column, name=f"pk_{name}"),
        )
    op.create_index("ix_subscription_areas_area_code", "subscription_areas", ["area_code"])
    op.create_table(
        "deliveries",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.BigInteger, sa.ForeignKey(
            "outbox.id", name="fk_deliveries_event_id_outbox"), nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("first_attempt_at", UTCDateTime, nullable=True),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("leased_by", sa.Text, nullable=True),
        sa.Column("delivered_at", UTCDateTime, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_detail", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
    )
    op.create_index("ix_deliveries_subscription_id", "deliveries", ["subscription_id"])
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_event_subscription", "deliveries",
                    ["event_id", "subscription_id", "target"], unique=True)
    op.create_table(
        "delivery_attempts",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.BigInteger, sa.ForeignKey(
            "deliveries.id", name="fk_delivery_attempts_delivery_id_deliveries"),
            nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("worker", sa.Text, nullable=False),
        sa.Column("delivered", sa.Boolean, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_attempts"),
    )
    op.create_index("ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"])
    op.create_table(
        "announced_levels",
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("area_code", sa.String(64), nullable=False),
        sa.Column("level", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("scheme", "area_code", name="pk_announced_levels"),
    )
    op.create_table(
        "reminders",
        sa.Column("declaration_id", sa.String(40), sa.ForeignKey(
            "declarations.id", name="fk_reminders_declaration_id_declarations"),
            nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("declaration_id", "expires_at", name="pk_reminders"),
    )
    op.create_table(
        "schedule",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("next_check", UTCDateTime, nullable=True),
        sa.Column("baselined", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedule"),
    )
    # A database with published declarations records its levels silently at the first check.
    op.execute("INSERT INTO schedule (id, next_check, baselined) SELECT 1, NULL, "
               "NOT EXISTS (SELECT 1 FROM declarations WHERE status = 'published')")


def downgrade() -> None:
    for table in ("schedule", "reminders", "announced_levels", "delivery_attempts",
                  "deliveries", "subscription_schemes", "subscription_areas", "subscriptions"):
        op.drop_table(table)
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email")
    op.drop_index("ix_outbox_pending", "outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("fanned_out_to")
        batch.drop_column("fanned_out_at")
