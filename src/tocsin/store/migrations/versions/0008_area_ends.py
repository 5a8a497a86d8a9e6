"""Each area's closed history in the order it ended: `declaration_areas.ends_at` repeats
`declarations.ends_at` (when a published declaration stops holding; NULL otherwise), indexed
after the area code. An area's first and last end, and what ended in a window, are then
ranges of one index, however long its history: before, a region under 25,000 closed
declarations read each of them to answer any of these.

Existing rows are filled from their declaration.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from tocsin.store.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("declaration_areas") as batch:
        batch.add_column(sa.Column("ends_at", UTCDateTime, nullable=True))
    a = sa.table("declaration_areas", sa.column("declaration_id", sa.String),
                 sa.column("ends_at", UTCDateTime))
    d = sa.table("declarations", sa.column("id", sa.String), sa.column("ends_at", UTCDateTime))
    op.get_bind().execute(sa.update(a).values(ends_at=sa.select(d.c.ends_at).where(
        d.c.id == a.c.declaration_id).scalar_subquery()))
    op.create_index("ix_declaration_areas_area_code_ends_at", "declaration_areas",
                    ["area_code", "ends_at"])


def downgrade() -> None:
    op.drop_index("ix_declaration_areas_area_code_ends_at", "declaration_areas")
    with op.batch_alter_table("declaration_areas") as batch:
        batch.drop_column("ends_at")
