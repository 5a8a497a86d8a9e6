"""The first schema: schemes, areas, declarations, cancellations, audit log, outbox, state.

Revision ID: 0001
Revises:
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from tocsin.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    state = op.create_table(
        "state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("audit_seq", sa.BigInteger, nullable=False),
        sa.Column("audit_hash", sa.String(64), nullable=False),
        sa.Column("changed_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_state"),
    )
    op.create_table(
        "schemes",
        sa.Column("key", sa.String(64)),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_schemes"),
    )
    op.create_table(
        "areas",
        sa.Column("code", sa.String(64)),
        sa.Column("parent", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("names", sa.JSON, nullable=False),
        sa.Column("geocodes", sa.JSON, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("geometry", sa.JSON, nullable=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_areas"),
        sa.ForeignKeyConstraint(["parent"], ["areas.code"], name="fk_areas_parent_areas"),
    )
    op.create_index("ix_areas_parent", "areas", ["parent"])
    op.create_table(
        "declarations",
        sa.Column("id", sa.String(40)),
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("level", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("effective_at", UTCDateTime, nullable=True),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("texts", sa.JSON, nullable=False),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("published_at", UTCDateTime, nullable=True),
        sa.Column("published_by", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_declarations"),
        sa.ForeignKeyConstraint(
            ["scheme"], ["schemes.key"], name="fk_declarations_scheme_schemes"
        ),
    )
    op.create_index("ix_declarations_scheme_status", "declarations", ["scheme", "status"])
    op.create_table(
        "declaration_areas",
        sa.Column("declaration_id", sa.String(40)),
        sa.Column("area_code", sa.String(64)),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("declaration_id", "area_code", name="pk_declaration_areas"),
        sa.ForeignKeyConstraint(
            ["declaration_id"], ["declarations.id"],
            name="fk_declaration_areas_declaration_id_declarations",
        ),
        sa.ForeignKeyConstraint(
            ["area_code"], ["areas.code"], name="fk_declaration_areas_area_code_areas"
        ),
    )
    op.create_index("ix_declaration_areas_area_code", "declaration_areas", ["area_code"])
    op.create_table(
        "declaration_replaces",
        sa.Column("declaration_id", sa.String(40)),
        sa.Column("replaces_id", sa.String(40)),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("declaration_id", "replaces_id", name="pk_declaration_replaces"),
        sa.ForeignKeyConstraint(
            ["declaration_id"], ["declarations.id"],
            name="fk_declaration_replaces_declaration_id_declarations",
        ),
        sa.ForeignKeyConstraint(
            ["replaces_id"], ["declarations.id"],
            name="fk_declaration_replaces_replaces_id_declarations",
        ),
    )
    op.create_index("ix_declaration_replaces_replaces_id", "declaration_replaces", ["replaces_id"])
    op.create_table(
        "cancellations",
        sa.Column("declaration_id", sa.String(40)),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("declaration_id", name="pk_cancellations"),
        sa.ForeignKeyConstraint(
            ["declaration_id"], ["declarations.id"],
            name="fk_cancellations_declaration_id_declarations",
        ),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger, autoincrement=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), autoincrement=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("audit_seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.bulk_insert(
        state,
        [{"id": 1, "version": 0, "audit_seq": 0, "audit_hash": "0" * 64,
          "changed_at": datetime.now(UTC)}],
    )


def downgrade() -> None:
    for table in ("outbox", "audit_log", "cancellations", "declaration_replaces",
                  "declaration_areas", "declarations", "areas", "schemes", "state"):
        op.drop_table(table)
