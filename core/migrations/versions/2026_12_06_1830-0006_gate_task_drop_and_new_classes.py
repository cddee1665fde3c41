"""learners.gate_max_task_drop and gate_max_to_new: the regression gate's per-task and new-class limits

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 18:30:00

The regression gate now compares earlier tasks' accuracy among the classes the active version knows (a
confusable new class no longer holds a good version): gate_max_drop now bounds the drop of the earlier
tasks' MEAN accuracy, and the new gate_max_task_drop bounds any one task's drop (one task alone moves a
lot where its classes border others'). It also holds a version that answers more than gate_max_to_new of
an earlier task's holdout with classes the active version does not know (core/gate.py). Existing
learners keep their gate_max_drop and get the defaults 0.4 and 0.5.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("learners", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gate_max_task_drop", sa.Float(), server_default="0.4", nullable=False))
        batch_op.add_column(sa.Column("gate_max_to_new", sa.Float(), server_default="0.5", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("learners", schema=None) as batch_op:
        batch_op.drop_column("gate_max_to_new")
        batch_op.drop_column("gate_max_task_drop")
