"""Webhook deliveries: staged when a job ends, then POSTed, signed and retried by a Celery task.

A job whose spec has a `callback_url` gets one delivery per final event (`audit.succeeded`,
`audit.failed`, `audit.cancelled`), staged in the same transaction that ends the job. The
broker message carries the delivery id only. The task builds the body from the store, signs the
exact body bytes with HMAC-SHA256 under the secret of the job's API key (or the server's
`FAIRSQUEEZE_WEBHOOK_SECRET` for jobs without a key), and POSTs it. Connection errors, timeouts,
5xx and 429 responses are retried with exponential backoff; other responses end the delivery.
Every POST is recorded as an attempt.

A delivery is locked while one task POSTs it, and a succeeded delivery is never sent again, so
duplicate messages cannot deliver an event twice. A receiver can still see the same delivery id
twice when its 2xx response is lost, so receivers should deduplicate by X-Fairsqueeze-Delivery.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from celery import Celery
from sqlalchemy.orm import Session

from service import store
from service.db import session_scope
from service.logs import job_context
from service.schemas.webhooks import GateSummary, WebhookAudit, WebhookPayload
from service.settings import Settings
from service.storage import ArtifactStorage
from service.submission import SEND_ERRORS
from service.tables import AuditRecord, utcnow
from workers.celery_app import DELIVER_WEBHOOK_TASK, WEBHOOK_QUEUE

logger = logging.getLogger(__name__)

EVENTS = {"succeeded": "audit.succeeded", "failed": "audit.failed", "cancelled": "audit.cancelled"}
SIGNATURE_HEADER = "X-Fairsqueeze-Signature"
EVENT_HEADER = "X-Fairsqueeze-Event"
DELIVERY_HEADER = "X-Fairsqueeze-Delivery"
TIMESTAMP_HEADER = "X-Fairsqueeze-Timestamp"
USER_AGENT = "fairsqueeze-webhook/1"
# Seconds a task keeps a delivery locked beyond the POST timeout, for recording the attempt.
LOCK_MARGIN_SECONDS = 30.0
# A pending delivery whose POST is this many seconds overdue lost its message and is sent again.
STALLED_AFTER_SECONDS = 300.0
MAX_ERROR_CHARACTERS = 500


@dataclass(frozen=True)
class DeliveryOutcome:
    """The result of one run of the delivery task; `retry_in` is set when another POST is scheduled."""

    delivery_id: str
    outcome: str
    attempt: int | None = None
    status_code: int | None = None
    retry_in: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "outcome": self.outcome,
            "attempt": self.attempt,
            "status_code": self.status_code,
            "retry_in": self.retry_in,
        }


def sign(secret: str, body: bytes) -> str:
    """Return the X-Fairsqueeze-Signature value of `body`: `sha256=` and the hex HMAC-SHA256 digest."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Check a received signature header against the body bytes, in constant time."""
    return hmac.compare_digest(sign(secret, body), signature.strip())


# Staging and sending, in the process that ends the job


def stage_delivery(session: Session, *, audit_id: str, status: str, now: datetime) -> str | None:
    """Record the delivery of the job's final `status` when its spec has a callback URL; return its id.

    Call it in the transaction that ends the job, so a job never ends without its delivery.
    Returns None when the job has no callback URL or already has a delivery for this event.
    """
    event = EVENTS.get(status)
    audit = session.get(AuditRecord, audit_id)
    if event is None or audit is None:
        return None
    url = (audit.spec or {}).get("callback_url")
    if not url:
        return None
    delivery = store.add_delivery(
        session, delivery_id=uuid.uuid4().hex, audit_id=audit_id, event=event, url=url, now=now
    )
    return delivery.id if delivery is not None else None


def send_delivery(celery: Celery, delivery_id: str, *, countdown: float | None = None) -> bool:
    """Put a delivery task on the webhooks queue; False (logged) when the broker is unreachable.

    A delivery whose message was not sent stays pending, and the gateway's scan sends it again.
    """
    try:
        celery.send_task(
            DELIVER_WEBHOOK_TASK,
            args=[delivery_id],
            queue=WEBHOOK_QUEUE,
            countdown=countdown,
            retry=True,
            retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0},
        )
    except SEND_ERRORS as error:
        logger.error("webhook delivery %s not queued, the gateway's scan sends it later: %s", delivery_id, error)
        return False
    return True


def resend_stalled_deliveries(*, settings: Settings, celery: Celery, now: datetime | None = None) -> list[str]:
    """Queue again the pending deliveries whose message was lost; return their ids."""
    now = now or utcnow()
    url = settings.resolved_database_url
    with session_scope(url) as session:
        stalled = store.find_stalled_deliveries(session, due_before=now - timedelta(seconds=STALLED_AFTER_SECONDS))

    resent = []
    for delivery in stalled:
        with session_scope(url) as session:
            if not store.reschedule_delivery(
                session, delivery_id=delivery.id, previous=delivery.next_attempt_at, now=now
            ):
                continue
        with job_context(delivery.audit_id):
            if send_delivery(celery, delivery.id):
                logger.warning("webhook delivery %s (%s) was overdue; queued again", delivery.id, delivery.event)
                resent.append(delivery.id)
    return resent


# The delivery task's work


def retry_delay(settings: Settings, attempts: int, retry_after: float | None = None) -> float:
    """Seconds to wait after `attempts` POSTs: the first delay doubled per attempt, capped.

    A receiver's Retry-After, when longer, is honoured up to the same cap.
    """
    delay = settings.webhook_retry_delay * (2 ** max(0, attempts - 1))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, settings.webhook_retry_max_delay)


@dataclass(frozen=True)
class _Attempt:
    """One POST of a delivery, as prepared by the task that locked the delivery."""

    delivery_id: str
    audit_id: str
    event: str
    target: str
    previous_attempts: int
    started_at: datetime


def deliver(
    delivery_id: str, *, settings: Settings, http: httpx.Client | None = None, now: datetime | None = None
) -> DeliveryOutcome:
    """Make one POST of a delivery when it is due and not locked by another task, and record the attempt."""
    url = settings.resolved_database_url
    now = now or utcnow()
    lock_until = now + timedelta(seconds=settings.webhook_timeout + LOCK_MARGIN_SECONDS)
    with session_scope(url) as session:
        locked = store.lock_delivery(session, delivery_id=delivery_id, now=now, until=lock_until)
        delivery = store.get_delivery(session, delivery_id=delivery_id)
        audit = None
        if locked and delivery is not None:
            audit = store.get_audit(session, audit_id=delivery.audit_id, owner=store.ANY_OWNER)
        if audit is None:
            status = delivery.status if delivery is not None else "deleted"
            logger.info(
                "webhook delivery %s not sent now: it is %s, locked by another task, or not due", delivery_id, status
            )
            return DeliveryOutcome(delivery_id, outcome="skipped")
        secret = _signing_secret(session, audit, settings)
        attempt = _Attempt(delivery_id, audit.id, delivery.event, delivery.url, delivery.attempts, now)

    with job_context(attempt.audit_id):
        if secret is None:
            error = (
                "no secret to sign with: the job has no API key and FAIRSQUEEZE_WEBHOOK_SECRET is not set "
                "on this worker"
            )
            logger.error("webhook delivery %s given up: %s", delivery_id, error)
            return _conclude(attempt, settings, 0.0, None, error, retryable=False, retry_after=None)

        storage = ArtifactStorage(settings.resolved_data_dir)
        body = build_payload(audit, event=attempt.event, delivery_id=delivery_id, storage=storage, sent_at=now)
        return _post(attempt, body, secret, settings=settings, http=http)


def _signing_secret(session: Session, audit: AuditRecord, settings: Settings) -> str | None:
    if audit.owner_key_id is not None:
        key = store.get_api_key(session, key_id=audit.owner_key_id)
        return key.webhook_secret if key is not None else None
    if settings.webhook_secret is not None:
        return settings.webhook_secret.get_secret_value()
    return None


def build_payload(
    audit: AuditRecord, *, event: str, delivery_id: str, storage: ArtifactStorage, sent_at: datetime
) -> bytes:
    """Return the JSON body bytes of a delivery: the job summary, with its gate verdict when it has one."""
    succeeded = audit.status == "succeeded"
    counts = {"succeeded": 0, "failed": 0}
    for variant in audit.variants:
        if variant.status in counts:
            counts[variant.status] += 1
    payload = WebhookPayload(
        event=event,
        delivery_id=delivery_id,
        sent_at=sent_at,
        audit=WebhookAudit(
            id=audit.id,
            status=audit.status,
            created_at=audit.created_at,
            started_at=audit.started_at,
            finished_at=audit.finished_at,
            duration_seconds=audit.duration_seconds,
            error=audit.error,
            variants_succeeded=counts["succeeded"],
            variants_failed=counts["failed"],
            report_url=f"/v1/audits/{audit.id}/report" if succeeded else None,
            report_html_url=f"/v1/audits/{audit.id}/report.html" if succeeded else None,
            gate=_gate_summary(storage, audit.id) if succeeded else None,
        ),
    )
    return payload.model_dump_json().encode("utf-8")


def _gate_summary(storage: ArtifactStorage, audit_id: str) -> GateSummary | None:
    """Read the gate verdict from gate.json, which the engine writes beside a report with a gate."""
    path = storage.audit_dir(audit_id) / "gate.json"
    if not path.is_file():
        return None
    try:
        gate = json.loads(path.read_text(encoding="utf-8"))
        return GateSummary(
            passed=bool(gate["passed"]),
            recommended=gate.get("recommended"),
            summary=str(gate.get("summary", "")),
            error=gate.get("error"),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.error("gate verdict left out of the webhook: cannot read %s: %s", path, error)
        return None


def _post(
    attempt: _Attempt, body: bytes, secret: str, *, settings: Settings, http: httpx.Client | None
) -> DeliveryOutcome:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: attempt.event,
        DELIVERY_HEADER: attempt.delivery_id,
        TIMESTAMP_HEADER: str(int(attempt.started_at.timestamp())),
        SIGNATURE_HEADER: sign(secret, body),
    }
    started = time.monotonic()
    status_code: int | None = None
    retry_after: float | None = None
    try:
        client = http or httpx.Client(timeout=settings.webhook_timeout, follow_redirects=False)
        try:
            response = client.post(attempt.target, content=body, headers=headers)
        finally:
            if http is None:
                client.close()
        status_code = response.status_code
        retry_after = _retry_after(response.headers.get("retry-after"), attempt.started_at)
        error, retryable = _judge(response)
    except httpx.HTTPError as exception:
        error, retryable = f"{type(exception).__name__}: {exception}"[:MAX_ERROR_CHARACTERS], True
    duration = time.monotonic() - started
    return _conclude(attempt, settings, duration, status_code, error, retryable=retryable, retry_after=retry_after)


def _judge(response: httpx.Response) -> tuple[str | None, bool]:
    """Return the attempt's error (None for 2xx) and whether another POST may succeed."""
    code = response.status_code
    if 200 <= code < 300:
        return None, False
    text = response.text[:200].strip()
    error = f"the receiver responded with {code}" + (f": {text}" if text else "")
    if 300 <= code < 400:
        location = response.headers.get("location", "")
        error = (
            f"the receiver responded with {code} (redirect to {location!r}), which is not followed; "
            "use the final URL"
        )
    return error[:MAX_ERROR_CHARACTERS], code >= 500 or code == 429


def _retry_after(value: str | None, now: datetime) -> float | None:
    """Parse a Retry-After header given in seconds or as an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - now).total_seconds())


def _conclude(
    attempt: _Attempt,
    settings: Settings,
    duration: float,
    status_code: int | None,
    error: str | None,
    *,
    retryable: bool,
    retry_after: float | None,
) -> DeliveryOutcome:
    """Record the attempt and decide: delivered, another POST later, or given up."""
    number = attempt.previous_attempts + 1
    if error is None:
        status, next_at, outcome = "succeeded", None, DeliveryOutcome(
            attempt.delivery_id, outcome="succeeded", attempt=number, status_code=status_code
        )
    elif retryable and number < settings.webhook_max_attempts:
        delay = retry_delay(settings, number, retry_after)
        status, next_at = "pending", utcnow() + timedelta(seconds=delay)
        outcome = DeliveryOutcome(
            attempt.delivery_id, outcome="retrying", attempt=number, status_code=status_code, retry_in=delay
        )
    else:
        status, next_at, outcome = "failed", None, DeliveryOutcome(
            attempt.delivery_id, outcome="failed", attempt=number, status_code=status_code
        )

    try:
        with session_scope(settings.resolved_database_url) as session:
            store.record_delivery_attempt(
                session,
                delivery_id=attempt.delivery_id,
                started_at=attempt.started_at,
                duration_seconds=duration,
                status_code=status_code,
                error=error,
                status=status,
                next_attempt_at=next_at,
            )
    except LookupError:
        logger.info("webhook delivery %s was deleted with its job while it was sent", attempt.delivery_id)
        return DeliveryOutcome(attempt.delivery_id, outcome="deleted", attempt=number, status_code=status_code)
    _log_outcome(attempt, outcome, error, retryable)
    return outcome


def _log_outcome(attempt: _Attempt, outcome: DeliveryOutcome, error: str | None, retryable: bool) -> None:
    where = f"{attempt.event} to {attempt.target} (delivery {attempt.delivery_id}, attempt {outcome.attempt})"
    if outcome.outcome == "succeeded":
        logger.info("webhook %s delivered", where)
    elif outcome.outcome == "retrying":
        logger.warning("webhook %s failed: %s; retrying in %.1f s", where, error, outcome.retry_in)
    else:
        reason = "no retries left" if retryable else "a retry cannot help"
        logger.error("webhook %s given up (%s): %s", where, reason, error)
