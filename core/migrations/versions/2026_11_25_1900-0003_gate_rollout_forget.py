"""regression gate, canary/shadow rollout, forgetting a class

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 19:00:00

Issue 11: a learner's activation policy and gate thresholds, its rollout (a candidate version beside
the active one), a version's status (published, held, purged) with the gate's reasons, forget tasks
(tasks.kind) and the classes they remove, and a job's structured result. Existing rows get the
defaults: learners gate, versions published, tasks learn; nothing else is backfilled.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("learners", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("auto_activate", sa.String(length=8), server_default="gate", nullable=False)
        )
        batch_op.add_column(sa.Column("gate_max_drop", sa.Float(), server_default="0.05", nullable=False))
        batch_op.add_column(sa.Column("gate_min_fidelity", sa.Float(), server_default="0.8", nullable=False))
        batch_op.add_column(sa.Column("candidate_version_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rollout", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("canary_percent", sa.Float(), nullable=True))
        batch_op.create_foreign_key(
            "fk_learners_candidate_version", "model_versions", ["candidate_version_id"], ["id"]
        )
    with op.batch_alter_table("classes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("forgotten_by_task_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_classes_forgotten_by_task", "tasks", ["forgotten_by_task_id"], ["id"])
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="learn", nullable=False))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("result", sa.JSON(), nullable=True))
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="published", nullable=False)
        )
        batch_op.add_column(sa.Column("hold_reasons", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("removed_classes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
        batch_op.drop_column("removed_classes")
        batch_op.drop_column("activated_at")
        batch_op.drop_column("hold_reasons")
        batch_op.drop_column("status")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("result")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("kind")
    with op.batch_alter_table("classes", schema=None) as batch_op:
        batch_op.drop_constraint("fk_classes_forgotten_by_task", type_="foreignkey")
        batch_op.drop_column("forgotten_by_task_id")
    with op.batch_alter_table("learners", schema=None) as batch_op:
        batch_op.drop_constraint("fk_learners_candidate_version", type_="foreignkey")
        batch_op.drop_column("canary_percent")
        batch_op.drop_column("rollout")
        batch_op.drop_column("candidate_version_id")
        batch_op.drop_column("gate_min_fidelity")
        batch_op.drop_column("gate_max_drop")
        batch_op.drop_column("auto_activate")
