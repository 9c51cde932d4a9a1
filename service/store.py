"""Queries and updates of the job store. Functions take the session first and the rest by keyword.

Gateway queries take `owner`: the id of the caller's API key, None for records created without a
key, or ANY_OWNER for the workers and the gateway's own scans. A record of another owner is
treated as missing, so the API returns 404 and never reveals that it exists.

Worker-side updates (claim, heartbeat, progress, finish) are single conditional UPDATEs keyed by
the job's attempt number. A redelivered or duplicated task message therefore cannot run a job
twice at once, and it cannot overwrite the outcome of the attempt that owns the job.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Union

from sqlalchemy import and_, case, func, or_, select, true, update
from sqlalchemy.orm import Session, selectinload

from service.tables import (
    FINAL_STATUSES,
    ApiKeyRecord,
    AuditRecord,
    DatasetRecord,
    DeliveryAttemptRecord,
    DeliveryRecord,
    ModelRecord,
    VariantRecord,
)


class AnyOwner(enum.Enum):
    ANY = "any"


ANY_OWNER = AnyOwner.ANY
# An API key id, None for records created without a key, or ANY_OWNER for no filter.
Owner = Union[str, None, AnyOwner]


def owned_by(column: Any, owner: Owner) -> Any:
    """Return the WHERE condition that keeps the rows of `owner`."""
    if owner is ANY_OWNER:
        return true()
    if owner is None:
        return column.is_(None)
    return column == owner


# API keys


def add_api_key(session: Session, *, key: ApiKeyRecord) -> None:
    session.add(key)


def get_api_key(session: Session, *, key_id: str) -> ApiKeyRecord | None:
    return session.get(ApiKeyRecord, key_id)


def find_api_key_by_prefix(session: Session, *, prefix: str) -> ApiKeyRecord | None:
    return session.scalar(select(ApiKeyRecord).where(ApiKeyRecord.prefix == prefix))


def list_api_keys(session: Session) -> list[ApiKeyRecord]:
    return list(session.scalars(select(ApiKeyRecord).order_by(ApiKeyRecord.created_at, ApiKeyRecord.id)))


def revoke_api_key(session: Session, *, key_id: str, now: datetime) -> bool:
    """Set the key's revocation time; False when it does not exist or was revoked before."""
    result = session.execute(
        update(ApiKeyRecord)
        .where(ApiKeyRecord.id == key_id, ApiKeyRecord.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1


# Models and datasets


def get_model(session: Session, *, model_id: str, owner: Owner) -> ModelRecord | None:
    query = select(ModelRecord).where(ModelRecord.id == model_id, owned_by(ModelRecord.owner_key_id, owner))
    return session.scalar(query)


def find_model_by_sha256(session: Session, *, sha256: str, owner: str | None) -> ModelRecord | None:
    query = select(ModelRecord).where(ModelRecord.sha256 == sha256, owned_by(ModelRecord.owner_key_id, owner))
    return session.scalar(query)


def list_models(session: Session, *, owner: Owner, limit: int, offset: int) -> tuple[list[ModelRecord], int]:
    condition = owned_by(ModelRecord.owner_key_id, owner)
    count = session.scalar(select(func.count()).select_from(ModelRecord).where(condition)) or 0
    query = (
        select(ModelRecord)
        .where(condition)
        .order_by(ModelRecord.created_at.desc(), ModelRecord.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query)), count


def get_dataset(session: Session, *, dataset_id: str, owner: Owner) -> DatasetRecord | None:
    query = select(DatasetRecord).where(
        DatasetRecord.id == dataset_id, owned_by(DatasetRecord.owner_key_id, owner)
    )
    return session.scalar(query)


def list_datasets(session: Session, *, owner: Owner, limit: int, offset: int) -> tuple[list[DatasetRecord], int]:
    condition = owned_by(DatasetRecord.owner_key_id, owner)
    count = session.scalar(select(func.count()).select_from(DatasetRecord).where(condition)) or 0
    query = (
        select(DatasetRecord)
        .where(condition)
        .order_by(DatasetRecord.created_at.desc(), DatasetRecord.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query)), count


# Audits, gateway side


def get_audit(session: Session, *, audit_id: str, owner: Owner) -> AuditRecord | None:
    query = (
        select(AuditRecord)
        .where(AuditRecord.id == audit_id, owned_by(AuditRecord.owner_key_id, owner))
        .options(selectinload(AuditRecord.variants))
    )
    return session.scalar(query)


def get_audit_by_idempotency_key(session: Session, *, key: str, owner: str | None) -> AuditRecord | None:
    query = (
        select(AuditRecord)
        .where(AuditRecord.idempotency_key == key, owned_by(AuditRecord.owner_key_id, owner))
        .options(selectinload(AuditRecord.variants))
    )
    return session.scalar(query)


def list_audits(
    session: Session, *, owner: Owner, status: str | None, limit: int, offset: int
) -> tuple[list[AuditRecord], int]:
    conditions = [owned_by(AuditRecord.owner_key_id, owner)]
    if status:
        conditions.append(AuditRecord.status == status)
    count = session.scalar(select(func.count()).select_from(AuditRecord).where(*conditions)) or 0
    query = (
        select(AuditRecord)
        .where(*conditions)
        .options(selectinload(AuditRecord.variants))
        .order_by(AuditRecord.created_at.desc(), AuditRecord.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query)), count


def add_audit(session: Session, *, audit: AuditRecord, variants: list[tuple[str, str]]) -> None:
    """Stage a new job and one pending row per variant, given as (name, method) with the base first."""
    session.add(audit)
    for position, (name, method) in enumerate(variants):
        session.add(VariantRecord(audit_id=audit.id, name=name, position=position, method=method, status="pending"))


def mark_enqueued(session: Session, *, audit_id: str, now: datetime) -> None:
    session.execute(update(AuditRecord).where(AuditRecord.id == audit_id).values(enqueued_at=now))


def cancel_audit(session: Session, *, audit_id: str, now: datetime) -> bool:
    """Set a queued or running job to cancelled; return False when it had already ended."""
    result = session.execute(
        update(AuditRecord)
        .where(AuditRecord.id == audit_id, AuditRecord.status.in_(("queued", "running")))
        .values(status="cancelled", finished_at=now)
    )
    return result.rowcount == 1


def delete_audit(session: Session, *, audit_id: str) -> bool:
    audit = session.get(AuditRecord, audit_id)
    if audit is None:
        return False
    session.delete(audit)
    return True


def count_audits_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(AuditRecord.status, func.count()).group_by(AuditRecord.status))
    return {status: count for status, count in rows}


def count_queued_by_queue(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(AuditRecord.queue, func.count()).where(AuditRecord.status == "queued").group_by(AuditRecord.queue)
    )
    return {queue: count for queue, count in rows}


def duration_buckets(session: Session, *, column: Any, buckets: list[float]) -> tuple[list[int], float, int]:
    """Return cumulative counts per upper bound, the sum and the count of a duration column."""
    columns = [func.coalesce(func.sum(case((column <= bound, 1), else_=0)), 0) for bound in buckets]
    query = select(func.count(column), func.coalesce(func.sum(column), 0.0), *columns).where(column.is_not(None))
    row = session.execute(query).one()
    return [int(value) for value in row[2:]], float(row[1]), int(row[0])


def find_lost_audits(session: Session, *, stale_before: datetime, limit: int = 100) -> list[AuditRecord]:
    """Return running jobs whose heartbeat and last enqueue are both older than `stale_before`."""
    query = (
        select(AuditRecord)
        .where(
            AuditRecord.status == "running",
            or_(AuditRecord.heartbeat_at.is_(None), AuditRecord.heartbeat_at < stale_before),
            or_(AuditRecord.enqueued_at.is_(None), AuditRecord.enqueued_at < stale_before),
        )
        .order_by(AuditRecord.created_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def mark_requeued(session: Session, *, audit_id: str, previous: datetime | None, now: datetime) -> bool:
    """Move `enqueued_at` from `previous` to `now`; False when another process did it first."""
    condition = AuditRecord.enqueued_at.is_(None) if previous is None else AuditRecord.enqueued_at == previous
    result = session.execute(update(AuditRecord).where(AuditRecord.id == audit_id, condition).values(enqueued_at=now))
    return result.rowcount == 1


# Audits, worker side


@dataclass(frozen=True)
class Claim:
    """Outcome of a claim: `attempt` is set when this task now owns the job."""

    attempt: int | None
    status: str | None
    attempts: int = 0

    @property
    def claimed(self) -> bool:
        return self.attempt is not None


def claim_audit(
    session: Session,
    *,
    audit_id: str,
    worker: str,
    device: str | None,
    now: datetime,
    stale_before: datetime,
    max_attempts: int,
    previous_attempt: int | None = None,
) -> Claim:
    """Take a job for this task and return the attempt number it now owns.

    A queued job starts attempt 1. A running job whose owner stopped sending heartbeats before
    `stale_before` starts the next attempt, up to `max_attempts`. A retry carrying
    `previous_attempt` continues that attempt when no other task has taken the job since.
    """
    if previous_attempt is not None:
        result = session.execute(
            update(AuditRecord)
            .where(owns_audit(audit_id, previous_attempt))
            .values(heartbeat_at=now, worker=worker, device=device)
        )
        if result.rowcount == 1:
            return Claim(attempt=previous_attempt, status="running", attempts=previous_attempt)

    stale = or_(AuditRecord.heartbeat_at.is_(None), AuditRecord.heartbeat_at < stale_before)
    result = session.execute(
        update(AuditRecord)
        .where(
            AuditRecord.id == audit_id,
            AuditRecord.attempts < max_attempts,
            or_(AuditRecord.status == "queued", and_(AuditRecord.status == "running", stale)),
        )
        .values(
            status="running",
            attempts=AuditRecord.attempts + 1,
            started_at=func.coalesce(AuditRecord.started_at, now),
            heartbeat_at=now,
            worker=worker,
            device=device,
            error=None,
        )
    )
    audit = session.get(AuditRecord, audit_id, populate_existing=True)
    if audit is None:
        return Claim(attempt=None, status=None)
    if result.rowcount != 1:
        return Claim(attempt=None, status=audit.status, attempts=audit.attempts)
    return Claim(attempt=audit.attempts, status=audit.status, attempts=audit.attempts)


def fail_exhausted_audit(
    session: Session, *, audit_id: str, attempts: int, stale_before: datetime, error: str, now: datetime
) -> bool:
    """Fail a running job that used up its attempts and whose last attempt stopped sending heartbeats."""
    result = session.execute(
        update(AuditRecord)
        .where(
            AuditRecord.id == audit_id,
            AuditRecord.status == "running",
            AuditRecord.attempts == attempts,
            or_(AuditRecord.heartbeat_at.is_(None), AuditRecord.heartbeat_at < stale_before),
        )
        .values(status="failed", error=error, finished_at=now, heartbeat_at=now)
    )
    return result.rowcount == 1


def owns_audit(audit_id: str, attempt: int) -> Any:
    return and_(AuditRecord.id == audit_id, AuditRecord.status == "running", AuditRecord.attempts == attempt)


def beat(session: Session, *, audit_id: str, attempt: int, now: datetime) -> bool:
    """Record a heartbeat; False when this attempt no longer owns the job (cancelled, deleted, taken over)."""
    result = session.execute(update(AuditRecord).where(owns_audit(audit_id, attempt)).values(heartbeat_at=now))
    return result.rowcount == 1


def record_variant_event(
    session: Session, *, audit_id: str, attempt: int, event: dict[str, Any], now: datetime
) -> bool:
    """Apply one progress event from the engine; False when this attempt no longer owns the job.

    A variant that an earlier attempt finished keeps its result: a resumed run reports it again,
    and the repeat changes nothing.
    """
    if not beat(session, audit_id=audit_id, attempt=attempt, now=now):
        return False
    if event.get("event") not in ("variant_started", "variant_finished") or event.get("variant") is None:
        return True
    name = str(event.get("variant"))
    variant = session.scalar(
        select(VariantRecord).where(VariantRecord.audit_id == audit_id, VariantRecord.name == name)
    )
    if variant is None:
        variant = VariantRecord(
            audit_id=audit_id, name=name, position=int(event.get("index", 0)), method="unknown", status="pending"
        )
        session.add(variant)
    if variant.status in ("succeeded", "failed"):
        return True

    if event["event"] == "variant_started":
        variant.status = "running"
        variant.started_at = now
    else:
        variant.status = "succeeded" if event.get("status") == "succeeded" else "failed"
        variant.finished_at = now
        variant.error = event.get("error")
        if variant.started_at is not None:
            variant.duration_seconds = (now - variant.started_at).total_seconds()
    return True


def finish_audit(
    session: Session,
    *,
    audit_id: str,
    attempt: int,
    status: str,
    now: datetime,
    error: str | None = None,
    report_variants: list[dict[str, Any]] | None = None,
) -> bool:
    """End an owned job with `status`; the report's variant list, when given, is the final word per variant."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"cannot finish a job with status {status!r}; use one of {', '.join(FINAL_STATUSES)}")
    audit = session.scalar(select(AuditRecord).where(owns_audit(audit_id, attempt)).with_for_update())
    if audit is None:
        return False
    audit.status = status
    audit.error = error
    audit.finished_at = now
    audit.heartbeat_at = now
    if audit.started_at is not None:
        audit.duration_seconds = (now - audit.started_at).total_seconds()
    if report_variants is not None:
        _apply_report_variants(session, audit_id=audit_id, variants=report_variants, now=now)
    return True


def _apply_report_variants(session: Session, *, audit_id: str, variants: list[dict[str, Any]], now: datetime) -> None:
    existing = {
        variant.name: variant
        for variant in session.scalars(select(VariantRecord).where(VariantRecord.audit_id == audit_id))
    }
    for position, entry in enumerate(variants):
        name = str(entry.get("name"))
        variant = existing.get(name)
        if variant is None:
            variant = VariantRecord(audit_id=audit_id, name=name, position=position, method="unknown", status="pending")
            session.add(variant)
        variant.position = position
        variant.method = str(entry.get("method") or variant.method)
        variant.status = "succeeded" if entry.get("status") == "succeeded" else "failed"
        variant.error = entry.get("error")
        if variant.finished_at is None:
            variant.finished_at = now


# Webhook deliveries


def add_delivery(
    session: Session, *, delivery_id: str, audit_id: str, event: str, url: str, now: datetime
) -> DeliveryRecord | None:
    """Stage the delivery of `event` for a job; None when the job already has one for that event."""
    existing = session.scalar(
        select(DeliveryRecord).where(DeliveryRecord.audit_id == audit_id, DeliveryRecord.event == event)
    )
    if existing is not None:
        return None
    delivery = DeliveryRecord(
        id=delivery_id,
        audit_id=audit_id,
        event=event,
        url=url,
        status="pending",
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(delivery)
    return delivery


def get_delivery(session: Session, *, delivery_id: str) -> DeliveryRecord | None:
    query = (
        select(DeliveryRecord)
        .where(DeliveryRecord.id == delivery_id)
        .options(selectinload(DeliveryRecord.attempt_log))
    )
    return session.scalar(query)


def list_deliveries(session: Session, *, audit_id: str) -> list[DeliveryRecord]:
    query = (
        select(DeliveryRecord)
        .where(DeliveryRecord.audit_id == audit_id)
        .options(selectinload(DeliveryRecord.attempt_log))
        .order_by(DeliveryRecord.created_at, DeliveryRecord.id)
    )
    return list(session.scalars(query))


def lock_delivery(session: Session, *, delivery_id: str, now: datetime, until: datetime) -> bool:
    """Lock a pending, due delivery for one POST; False when it is done, not due, or locked by another task."""
    result = session.execute(
        update(DeliveryRecord)
        .where(
            DeliveryRecord.id == delivery_id,
            DeliveryRecord.status == "pending",
            or_(DeliveryRecord.next_attempt_at.is_(None), DeliveryRecord.next_attempt_at <= now),
            or_(DeliveryRecord.locked_until.is_(None), DeliveryRecord.locked_until < now),
        )
        .values(locked_until=until)
    )
    return result.rowcount == 1


def record_delivery_attempt(
    session: Session,
    *,
    delivery_id: str,
    started_at: datetime,
    duration_seconds: float,
    status_code: int | None,
    error: str | None,
    status: str,
    next_attempt_at: datetime | None,
) -> int:
    """Log one POST, set the delivery's status and release it; return the attempt's number."""
    delivery = session.get(DeliveryRecord, delivery_id, with_for_update=True)
    if delivery is None:
        raise LookupError(f"delivery '{delivery_id}' not found")
    delivery.attempts += 1
    session.add(
        DeliveryAttemptRecord(
            delivery_id=delivery_id,
            number=delivery.attempts,
            started_at=started_at,
            duration_seconds=duration_seconds,
            status_code=status_code,
            error=error,
        )
    )
    delivery.status = status
    delivery.next_attempt_at = next_attempt_at
    delivery.locked_until = None
    if status == "succeeded":
        delivery.delivered_at = started_at
    return delivery.attempts


def find_stalled_deliveries(session: Session, *, due_before: datetime, limit: int = 100) -> list[DeliveryRecord]:
    """Return pending deliveries whose next POST was due before `due_before` and that no task has locked."""
    query = (
        select(DeliveryRecord)
        .where(
            DeliveryRecord.status == "pending",
            DeliveryRecord.next_attempt_at < due_before,
            or_(DeliveryRecord.locked_until.is_(None), DeliveryRecord.locked_until < due_before),
        )
        .order_by(DeliveryRecord.next_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def reschedule_delivery(session: Session, *, delivery_id: str, previous: datetime | None, now: datetime) -> bool:
    """Move a stalled delivery's due time from `previous` to `now`; False when another process did it first."""
    result = session.execute(
        update(DeliveryRecord)
        .where(
            DeliveryRecord.id == delivery_id,
            DeliveryRecord.status == "pending",
            DeliveryRecord.next_attempt_at == previous,
        )
        .values(next_attempt_at=now)
    )
    return result.rowcount == 1
