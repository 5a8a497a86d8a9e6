"""CAP in and out: the CAP sender fixed at publication, imported messages, WebSub subscribers,
and the time of the last change the public sees.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from tocsin.store.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("state") as batch:
        batch.add_column(sa.Column("public_changed_at", UTCDateTime, nullable=True))
    op.execute("UPDATE state SET public_changed_at = changed_at")
    with op.batch_alter_table("declarations") as batch:
        batch.add_column(sa.Column("cap_sender", sa.Text, nullable=True))
    op.create_table(
        "cap_documents",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("declaration_id", sa.String(40), sa.ForeignKey(
            "declarations.id", name="fk_cap_documents_declaration_id_declarations"),
            nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_cap_documents"),
    )
    op.create_index("ix_cap_documents_declaration_id", "cap_documents", ["declaration_id"])
    op.create_table(
        "cap_messages",
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("identifier", sa.Text, nullable=False),
        sa.Column("sent", UTCDateTime, nullable=False),
        sa.Column("msg_type", sa.String(16), nullable=False),
        sa.Column("declaration_id", sa.String(40), sa.ForeignKey(
            "declarations.id", name="fk_cap_messages_declaration_id_declarations"),
            nullable=True),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("sender", "identifier", name="pk_cap_messages"),
    )
    op.create_index("ix_cap_messages_declaration_id", "cap_messages", ["declaration_id"])
    op.create_table(
        "websub_subscriptions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("callback", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("lease_expires_at", UTCDateTime, nullable=True),
        sa.Column("last_delivery_at", UTCDateTime, nullable=True),
        sa.Column("last_status", sa.Text, nullable=True),
        sa.Column("last_etag", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_websub_subscriptions"),
    )
    op.create_index("ix_websub_subscriptions_topic_callback", "websub_subscriptions",
                    ["topic", "callback"], unique=True)


def downgrade() -> None:
    op.drop_table("websub_subscriptions")
    op.drop_table("cap_messages")
    op.drop_table("cap_documents")
    with op.batch_alter_table("declarations") as batch:
        batch.drop_column("cap_sender")
    with op.batch_alter_table("state") as batch:
        batch.drop_column("public_changed_at")
