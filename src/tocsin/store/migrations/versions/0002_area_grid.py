"""Tile-grid positions for areas drawn on a map without shapes.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("areas") as batch:
        batch.add_column(sa.Column("grid_row", sa.Integer, nullable=True))
        batch.add_column(sa.Column("grid_col", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("areas") as batch:
        batch.drop_column("grid_col")
        batch.drop_column("grid_row")
