"""learners.gate_max_to_new: the gate's limit on an earlier task's holdout answered with new classes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 18:30:00

The regression gate now compares an earlier task's accuracy among the classes the active version knows
(a confusable new class no longer holds a good version), and holds a version that answers more than
gate_max_to_new of an earlier task's holdout with classes the active version does not know (core/gate.py).
Existing learners get the default 0.5.
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
        batch_op.add_column(sa.Column("gate_max_to_new", sa.Float(), server_default="0.5", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("learners", schema=None) as batch_op:
        batch_op.drop_column("gate_max_to_new")
