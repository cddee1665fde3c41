"""model_versions.active dropped: Learner.active_version_id is the one record of the active version

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 02:00:00

Issue 13: the flag repeated learners.active_version_id and was written in two places besides it;
ModelVersion.active is now derived from the learner (core/orm.py). Serving always read the learner's
column, so upgrading keeps what serves. Downgrading adds the flag back, true exactly on the version
each learner's active_version_id names.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("active")


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("active", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute(
        "UPDATE model_versions SET active = true "
        "WHERE id IN (SELECT active_version_id FROM learners WHERE active_version_id IS NOT NULL)"
    )
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.alter_column("active", server_default=None)
