"""Create the job store tables: models, datasets, audits and variants.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("opset", sa.Integer(), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("parameters", sa.BigInteger(), nullable=False),
        _timestamp("created_at", nullable=False),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("delimiter", sa.String(1), nullable=False),
        _timestamp("created_at", nullable=False),
    )
    op.create_index("ix_datasets_sha256", "datasets", ["sha256"])
    op.create_table(
        "audits",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(16), nullable=False),
        sa.Column("trains", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("model_id", sa.String(32), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("evaluation_dataset_id", sa.String(32), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("training_dataset_id", sa.String(32), sa.ForeignKey("datasets.id"), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("enqueued_at"),
        _timestamp("started_at"),
        _timestamp("finished_at"),
        _timestamp("heartbeat_at"),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_audits_status", "audits", ["status"])
    op.create_index("ix_audits_created_at", "audits", ["created_at"])
    op.create_table(
        "variants",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("audit_id", sa.String(32), sa.ForeignKey("audits.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at"),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("audit_id", "name", name="uq_variants_audit_name"),
    )
    op.create_index("ix_variants_audit_id", "variants", ["audit_id"])


def downgrade() -> None:
    op.drop_index("ix_variants_audit_id", table_name="variants")
    op.drop_table("variants")
    op.drop_index("ix_audits_created_at", table_name="audits")
    op.drop_index("ix_audits_status", table_name="audits")
    op.drop_table("audits")
    op.drop_index("ix_datasets_sha256", table_name="datasets")
    op.drop_table("datasets")
    op.drop_table("models")
