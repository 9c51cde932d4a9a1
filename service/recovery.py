"""Find running jobs whose worker was lost, and webhook deliveries whose message was lost, and
queue them again.

A worker that dies (SIGKILL, a lost machine) stops writing its job's heartbeat. Redis hands the
unacknowledged message to another worker only after the visibility timeout, and kombu's SQLAlchemy
transport never does, so the gateway re-sends such jobs itself. A duplicate message is harmless:
the store lets one task own a job at a time.

NOTE: a job whose message a worker took but whose task died before claiming it stays queued
with no message on the SQLAlchemy transport; the scan covers running jobs only.

A pending webhook delivery whose next POST is overdue by `service.webhooks.STALLED_AFTER_SECONDS`
(its message was never sent, or its worker died) is sent again; its lock keeps a duplicate
message from POSTing twice at once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from celery import Celery
from starlette.concurrency import run_in_threadpool

from service import store
from service.db import session_scope
from service.errors import ApiError
from service.logs import job_context
from service.settings import Settings
from service.submission import enqueue
from service.tables import utcnow
from service.webhooks import resend_stalled_deliveries

logger = logging.getLogger(__name__)


def requeue_lost_audits(*, settings: Settings, celery: Celery, now: datetime | None = None) -> list[str]:
    """Send lost jobs to their queue again and return their ids."""
    now = now or utcnow()
    stale_before = now - timedelta(seconds=settings.resolved_stale_after)
    url = settings.resolved_database_url
    with session_scope(url) as session:
        lost = store.find_lost_audits(session, stale_before=stale_before)

    requeued = []
    for audit in lost:
        with session_scope(url) as session:
            if not store.mark_requeued(session, audit_id=audit.id, previous=audit.enqueued_at, now=now):
                continue
        with job_context(audit.id):
            try:
                enqueue(celery, audit_id=audit.id, queue=audit.queue)
            except ApiError as error:
                logger.error("lost job not queued again: %s", error)
                continue
            logger.warning(
                "job lost its worker (last heartbeat %s, attempt %d); queued again on %s",
                audit.heartbeat_at.isoformat() if audit.heartbeat_at else "never",
                audit.attempts,
                audit.queue,
            )
        requeued.append(audit.id)
    return requeued


async def recovery_loop(settings: Settings, celery: Celery) -> None:
    """Scan for lost jobs and stalled deliveries every `settings.recovery_interval` seconds until cancelled."""
    while True:
        await asyncio.sleep(settings.recovery_interval)
        for scan, name in ((requeue_lost_audits, "lost jobs"), (resend_stalled_deliveries, "stalled deliveries")):
            try:
                await run_in_threadpool(scan, settings=settings, celery=celery)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("scan for %s failed; trying again in %s s", name, settings.recovery_interval)
