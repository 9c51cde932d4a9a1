"""Add API keys, record owners, and webhook deliveries with their attempts.

Models become unique per owner and sha256, and idempotency keys unique per owner, so two API keys
never share a record. Rows without an owner keep the old uniqueness through partial indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2027-01-18
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NO_OWNER = sa.text("owner_key_id IS NULL")
# 0001 created these unique constraints without names. PostgreSQL named them itself; on SQLite,
# batch mode finds them by this naming convention.
SQLITE_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
UNNAMED_UNIQUE = {
    "models": {"postgresql": "models_sha256_key", "sqlite": "uq_models_sha256"},
    "audits": {"postgresql": "audits_idempotency_key_key", "sqlite": "uq_audits_idempotency_key"},
}


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _unique_name(table: str) -> str:
    dialect = op.get_bind().dialect.name
    return UNNAMED_UNIQUE[table].get(dialect, UNNAMED_UNIQUE[table]["postgresql"])


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False, unique=True),
        sa.Column("key_sha256", sa.String(64), nullable=False),
        sa.Column("webhook_secret", sa.String(255), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("revoked_at"),
    )

    with op.batch_alter_table("models", naming_convention=SQLITE_NAMING) as batch:
        batch.add_column(sa.Column("owner_key_id", sa.String(32), nullable=True))
        batch.create_foreign_key("fk_models_owner_key_id_api_keys", "api_keys", ["owner_key_id"], ["id"])
        batch.drop_constraint(_unique_name("models"), type_="unique")
        batch.create_unique_constraint("uq_models_owner_sha256", ["owner_key_id", "sha256"])
    op.create_index(
        "uq_models_sha256_no_owner",
        "models",
        ["sha256"],
        unique=True,
        sqlite_where=NO_OWNER,
        postgresql_where=NO_OWNER,
    )

    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("owner_key_id", sa.String(32), nullable=True))
        batch.create_foreign_key("fk_datasets_owner_key_id_api_keys", "api_keys", ["owner_key_id"], ["id"])
        batch.create_index("ix_datasets_owner_key_id", ["owner_key_id"])

    with op.batch_alter_table("audits", naming_convention=SQLITE_NAMING) as batch:
        batch.add_column(sa.Column("owner_key_id", sa.String(32), nullable=True))
        batch.create_foreign_key("fk_audits_owner_key_id_api_keys", "api_keys", ["owner_key_id"], ["id"])
        batch.create_index("ix_audits_owner_key_id", ["owner_key_id"])
        batch.drop_constraint(_unique_name("audits"), type_="unique")
        batch.create_unique_constraint("uq_audits_owner_idempotency_key", ["owner_key_id", "idempotency_key"])
    op.create_index(
        "uq_audits_idempotency_key_no_owner",
        "audits",
        ["idempotency_key"],
        unique=True,
        sqlite_where=NO_OWNER,
        postgresql_where=NO_OWNER,
    )

    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("audit_id", sa.String(32), sa.ForeignKey("audits.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("next_attempt_at"),
        _timestamp("locked_until"),
        _timestamp("delivered_at"),
        sa.UniqueConstraint("audit_id", "event", name="uq_deliveries_audit_event"),
    )
    op.create_index("ix_deliveries_audit_id", "deliveries", ["audit_id"])
    op.create_index("ix_deliveries_status", "deliveries", ["status"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id", sa.String(32), sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        _timestamp("started_at", nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("delivery_id", "number", name="uq_delivery_attempts_number"),
    )
    op.create_index("ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_attempts_delivery_id", table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
    op.drop_index("ix_deliveries_status", table_name="deliveries")
    op.drop_index("ix_deliveries_audit_id", table_name="deliveries")
    op.drop_table("deliveries")

    op.drop_index("uq_audits_idempotency_key_no_owner", table_name="audits")
    with op.batch_alter_table("audits") as batch:
        batch.drop_constraint("uq_audits_owner_idempotency_key", type_="unique")
        batch.drop_index("ix_audits_owner_key_id")
        batch.drop_constraint("fk_audits_owner_key_id_api_keys", type_="foreignkey")
        batch.drop_column("owner_key_id")
        batch.create_unique_constraint(_unique_name("audits"), ["idempotency_key"])

    with op.batch_alter_table("datasets") as batch:
        batch.drop_index("ix_datasets_owner_key_id")
        batch.drop_constraint("fk_datasets_owner_key_id_api_keys", type_="foreignkey")
        batch.drop_column("owner_key_id")

    op.drop_index("uq_models_sha256_no_owner", table_name="models")
    with op.batch_alter_table("models") as batch:
        batch.drop_constraint("uq_models_owner_sha256", type_="unique")
        batch.drop_constraint("fk_models_owner_key_id_api_keys", type_="foreignkey")
        batch.drop_column("owner_key_id")
        batch.create_unique_constraint(_unique_name("models"), ["sha256"])

    op.drop_table("api_keys")
