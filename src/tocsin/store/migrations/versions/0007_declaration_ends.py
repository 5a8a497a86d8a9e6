"""When each published declaration stops holding, kept on its row and indexed, so that a
server reads only the declarations that may still hold (and closed history on demand); and
an index by effective time, so that the history listings read one page, newest first.

`ends_at` is the earliest of its expiry, its cancellation and the effective time of the
first published declaration replacing it (NULL: it never ends). Existing rows are filled in
batches.

Revision ID: 0007
Revises: 0006
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

from tocsin.store.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = 5_000


def upgrade() -> None:
    with op.batch_alter_table("declarations") as batch:
        batch.add_column(sa.Column("ends_at", UTCDateTime, nullable=True))
    op.create_index("ix_declarations_status_ends_at", "declarations", ["status", "ends_at"])
    op.create_index("ix_declarations_status_effective_at", "declarations",
                    ["status", "effective_at"])
    _fill()


def _fill() -> None:
    conn = op.get_bind()
    d = sa.table("declarations", sa.column("id", sa.String), sa.column("status", sa.String),
                 sa.column("expires_at", UTCDateTime), sa.column("effective_at", UTCDateTime),
                 sa.column("ends_at", UTCDateTime))
    c = sa.table("cancellations", sa.column("declaration_id", sa.String),
                 sa.column("at", UTCDateTime))
    r = sa.table("declaration_replaces", sa.column("declaration_id", sa.String),
                 sa.column("replaces_id", sa.String))
    b = d.alias("b")
    ends: dict[str, datetime | None] = {key: at for key, at in conn.execute(
        sa.select(d.c.id, d.c.expires_at).where(d.c.status == "published"))}

    def earlier(key: str, at: datetime | None) -> None:
        if key in ends and at is not None:
            current = ends[key]
            ends[key] = at if current is None or at < current else current

    for key, at in conn.execute(sa.select(c.c.declaration_id, c.c.at)):
        earlier(key, at)
    replacing = (sa.select(r.c.replaces_id, b.c.effective_at)
                 .join(b, b.c.id == r.c.declaration_id).where(b.c.status == "published"))
    for key, at in conn.execute(replacing):
        earlier(key, at)
    rows = [{"key": key, "ends": at} for key, at in ends.items() if at is not None]
    statement = (sa.update(d).where(d.c.id == sa.bindparam("key"))
                 .values(ends_at=sa.bindparam("ends")))
    for start in range(0, len(rows), BATCH):
        conn.execute(statement, rows[start:start + BATCH])


def downgrade() -> None:
    op.drop_index("ix_declarations_status_effective_at", "declarations")
    op.drop_index("ix_declarations_status_ends_at", "declarations")
    with op.batch_alter_table("declarations") as batch:
        batch.drop_column("ends_at")
