"""Tables of the job store: API keys, uploaded models and datasets, audit jobs, their variants and
their webhook deliveries."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
VARIANT_STATUSES = ("pending", "running", "succeeded", "failed")
DELIVERY_STATUSES = ("pending", "succeeded", "failed")
# Rows with no owner key were created without an API key (keys are optional in embedded mode).
NO_OWNER = text("owner_key_id IS NULL")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; pass a timezone-aware UTC time")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class ApiKeyRecord(Base):
    """An API key: only the SHA-256 of the key is stored, found by the key's public prefix."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64))
    # NOTE: stored in plain text, because the worker needs it to sign deliveries. Anyone who can read
    # the job store can therefore forge this key's webhook signatures.
    webhook_secret: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ModelRecord(Base):
    __tablename__ = "models"
    # The same bytes give one record per owner. Rows without an owner need a partial index to be
    # unique by sha256, because a composite unique constraint treats NULL owners as distinct.
    __table_args__ = (
        UniqueConstraint("owner_key_id", "sha256", name="uq_models_owner_sha256"),
        Index("uq_models_sha256_no_owner", "sha256", unique=True, sqlite_where=NO_OWNER, postgresql_where=NO_OWNER),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(BigInteger)
    opset: Mapped[int | None] = mapped_column(Integer, nullable=True)
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    parameters: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DatasetRecord(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True, index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    delimiter: Mapped[str] = mapped_column(String(1))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditRecord(Base):
    __tablename__ = "audits"
    # Idempotency keys are scoped to the owner, so one key cannot probe another key's jobs.
    __table_args__ = (
        UniqueConstraint("owner_key_id", "idempotency_key", name="uq_audits_owner_idempotency_key"),
        Index(
            "uq_audits_idempotency_key_no_owner",
            "idempotency_key",
            unique=True,
            sqlite_where=NO_OWNER,
            postgresql_where=NO_OWNER,
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    queue: Mapped[str] = mapped_column(String(16))
    trains: Mapped[bool] = mapped_column(Boolean)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"))
    evaluation_dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    training_dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    device: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    variants: Mapped[list[VariantRecord]] = relationship(
        back_populates="audit",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="VariantRecord.position",
    )


class VariantRecord(Base):
    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("audit_id", "name", name="uq_variants_audit_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    audit_id: Mapped[str] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    audit: Mapped[AuditRecord] = relationship(back_populates="variants")


class DeliveryRecord(Base):
    """One webhook event of a job; retries of the POST are its attempts."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("audit_id", "event", name="uq_deliveries_audit_event"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    audit_id: Mapped[str] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A task that sends the POST locks the delivery until this time, so a duplicate message waits.
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    attempt_log: Mapped[list[DeliveryAttemptRecord]] = relationship(
        back_populates="delivery",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="DeliveryAttemptRecord.number",
    )


class DeliveryAttemptRecord(Base):
    """One POST of a delivery: the HTTP status code, or the error when no response came."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "number", name="uq_delivery_attempts_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float] = mapped_column(Float)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    delivery: Mapped[DeliveryRecord] = relationship(back_populates="attempt_log")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
