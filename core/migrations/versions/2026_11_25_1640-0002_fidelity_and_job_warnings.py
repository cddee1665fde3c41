"""memory fidelity per class on each version; warnings on each job

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:40:00

Issue 9, item 2: a version stores the memory fidelity of every class it knows (dgm/fidelity.py), and
a succeeded job names the classes of its task whose fidelity is low. Both columns are nullable: rows
written before this revision have no fidelity to show (NULL), and nothing is backfilled.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fidelity", sa.JSON(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("warnings", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("warnings")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("fidelity")
