"""Celery tasks. `run_audit_job` claims a job in the store, runs the engine and records the outcome;
`deliver_webhook` POSTs a job's webhook delivery (see `service.webhooks`).

The engine is imported inside the task, so the worker's main process and the gateway never load
torch. Every log line written while a job runs carries its id.
"""

from __future__ import annotations

import contextvars
import logging
import socket
import threading
import time
from datetime import timedelta
from typing import Any, Callable

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from billiard.exceptions import SoftTimeLimitExceeded
from celery import Celery

from service import store
from service.db import session_scope
from service.jobspecs import resolve_paths
from service.logs import job_context
from service.settings import Settings, get_settings
from service.storage import ArtifactStorage
from service.tables import utcnow
from service.webhooks import deliver, send_delivery, stage_delivery
from workers.celery_app import DELIVER_WEBHOOK_TASK, RUN_AUDIT_TASK, app
from workers.spec import JobSpec, SpecError, parse_spec

logger = logging.getLogger(__name__)

# Errors that can pass: the store or the broker was unreachable for a moment.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
)
MAX_RETRY_COUNTDOWN_SECONDS = 60


class JobAborted(Exception):
    """The job was cancelled, deleted or taken over by another attempt while this one ran."""


class JobTimedOut(Exception):
    """The job ran past the soft time limit."""


class RetryableJobError(Exception):
    """A transient error stopped the job; `attempt` lets the retry take the job back at once."""

    def __init__(self, attempt: int | None) -> None:
        super().__init__(f"transient error during attempt {attempt}")
        self.attempt = attempt


@app.task(bind=True, name=RUN_AUDIT_TASK, acks_late=True, reject_on_worker_lost=True)
def run_audit_job(self: Any, audit_id: str, previous_attempt: int | None = None) -> dict[str, Any]:
    """Run one audit job; retry on errors that can pass, never on invalid input."""
    settings = get_settings()
    with job_context(audit_id):
        worker = self.request.hostname or socket.gethostname()
        try:
            return AuditJob(audit_id, settings=settings, worker=worker, previous_attempt=previous_attempt).run()
        except RetryableJobError as error:
            cause = error.__cause__ or error
            if self.request.retries >= settings.max_retries:
                logger.error("job not retried again after %d retries of transient errors: %s", self.request.retries, cause)
                raise cause from None
            countdown = min(MAX_RETRY_COUNTDOWN_SECONDS, 2**self.request.retries)
            logger.warning("job will be retried in %d s after a transient error: %s", countdown, cause)
            raise self.retry(
                args=[audit_id],
                kwargs={"previous_attempt": error.attempt},
                countdown=countdown,
                exc=cause,
            ) from None


@app.task(name=DELIVER_WEBHOOK_TASK, acks_late=True)
def deliver_webhook(delivery_id: str) -> dict[str, Any]:
    """POST one webhook delivery and queue its next attempt when the receiver may accept a retry."""
    settings = get_settings()
    outcome = deliver(delivery_id, settings=settings)
    if outcome.retry_in is not None:
        send_delivery(app, delivery_id, countdown=outcome.retry_in)
    return outcome.as_dict()


class Heartbeat(threading.Thread):
    """Thread that writes the job's heartbeat every `interval` seconds and sets `lost` once the job is no
    longer owned by this attempt."""

    def __init__(self, beat: Callable[[], bool], interval: float) -> None:
        super().__init__(name="fairsqueeze-heartbeat", daemon=True)
        self._beat = beat
        self._interval = interval
        self._stop_event = threading.Event()
        self._context = contextvars.copy_context()
        self.lost = threading.Event()

    def run(self) -> None:
        self._context.run(self._loop)

    def _loop(self) -> None:
        while not self._stop_event.wait(self._interval):
            try:
                owned = self._beat()
            except TRANSIENT_ERRORS as error:
                logger.warning("heartbeat not written: %s", error)
                continue
            if not owned:
                self.lost.set()
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=self._interval + 5)


class AuditJob:
    """One delivery of a job: claim it, run the engine with progress and heartbeats, record the end."""

    def __init__(
        self,
        audit_id: str,
        *,
        settings: Settings,
        worker: str,
        previous_attempt: int | None = None,
        celery: Celery | None = None,
    ) -> None:
        self.audit_id = audit_id
        # The app that sends the job's webhook delivery; the worker's own app unless a caller passes one.
        self.celery = celery or app
        self.settings = settings
        self.worker = worker
        self.previous_attempt = previous_attempt
        self.url = settings.resolved_database_url
        self.storage = ArtifactStorage(settings.resolved_data_dir)
        self.attempt: int | None = None
        self.deadline = time.monotonic() + settings.soft_time_limit
        self.heartbeat: Heartbeat | None = None

    def run(self) -> dict[str, Any]:
        from workers.pipeline import resolve_device

        device = resolve_device(None)
        claim = self._claim(device)
        if not claim.claimed:
            return self._skip(claim)
        self.attempt = claim.attempt
        logger.info("job claimed by %s (attempt %d, device %s)", self.worker, self.attempt, device)

        self.heartbeat = Heartbeat(self._beat, self.settings.heartbeat_interval)
        self.heartbeat.start()
        try:
            spec = self._load_spec()
            report = self._run_engine(spec, device)
        except JobAborted:
            return self._aborted()
        except RetryableJobError:
            raise
        except _InvalidInput as error:
            logger.warning("job failed on invalid input: %s", error)
            return self._finish("failed", error=str(error))
        except (SoftTimeLimitExceeded, JobTimedOut):
            logger.error("job stopped at the soft time limit of %d s", self.settings.soft_time_limit)
            return self._finish(
                "failed",
                error=f"the audit ran past the time limit of {self.settings.soft_time_limit} s and was stopped; "
                "use fewer recipes or bootstrap resamples, or raise FAIRSQUEEZE_SOFT_TIME_LIMIT",
            )
        except Exception as error:
            logger.exception("job failed with an unexpected error")
            return self._finish("failed", error=f"the audit failed with an internal error: {type(error).__name__}: {error}")
        finally:
            self.heartbeat.stop()
        return self._finish("succeeded", report_variants=report.get("variants", []))

    # Steps

    def _claim(self, device: str) -> store.Claim:
        now = utcnow()
        stale_before = now - timedelta(seconds=self.settings.resolved_stale_after)
        try:
            with session_scope(self.url) as session:
                return store.claim_audit(
                    session,
                    audit_id=self.audit_id,
                    worker=self.worker,
                    device=device,
                    now=now,
                    stale_before=stale_before,
                    max_attempts=self.settings.max_attempts,
                    previous_attempt=self.previous_attempt,
                )
        except TRANSIENT_ERRORS as error:
            raise RetryableJobError(self.previous_attempt) from error

    def _skip(self, claim: store.Claim) -> dict[str, Any]:
        if claim.status is None:
            logger.info("job not found in the store (deleted); nothing to do")
        elif claim.status == "running" and claim.attempts >= self.settings.max_attempts:
            self._give_up(claim.attempts)
        else:
            logger.info("job not claimed: its status is %s", claim.status)
        return {"audit_id": self.audit_id, "outcome": "skipped", "status": claim.status}

    def _give_up(self, attempts: int) -> None:
        now = utcnow()
        stale_before = now - timedelta(seconds=self.settings.resolved_stale_after)
        message = (
            f"the job was interrupted {attempts} times (its worker was lost or killed each time) and is not "
            "tried again; check the worker logs for memory or time limits"
        )
        delivery_id = None
        try:
            with session_scope(self.url) as session:
                failed = store.fail_exhausted_audit(
                    session, audit_id=self.audit_id, attempts=attempts, stale_before=stale_before, error=message, now=now
                )
                if failed:
                    delivery_id = stage_delivery(session, audit_id=self.audit_id, status="failed", now=now)
        except TRANSIENT_ERRORS as error:
            raise RetryableJobError(self.previous_attempt) from error
        if failed:
            logger.error("job failed: %s", message)
        if delivery_id is not None:
            send_delivery(self.celery, delivery_id)

    def _load_spec(self) -> JobSpec:
        with session_scope(self.url) as session:
            audit = store.get_audit(session, audit_id=self.audit_id, owner=store.ANY_OWNER)
            if audit is None:
                raise JobAborted("the job was deleted")
            model = store.get_model(session, model_id=audit.model_id, owner=store.ANY_OWNER)
            evaluation = store.get_dataset(session, dataset_id=audit.evaluation_dataset_id, owner=store.ANY_OWNER)
            training = None
            if audit.training_dataset_id is not None:
                training = store.get_dataset(session, dataset_id=audit.training_dataset_id, owner=store.ANY_OWNER)
            if model is None or evaluation is None or (audit.training_dataset_id and training is None):
                raise _InvalidInput("the model or a dataset this job names is no longer in the store; upload it again")
            try:
                spec = parse_spec(audit.spec)
            except SpecError as error:
                raise _InvalidInput(str(error)) from error
            return resolve_paths(spec, model=model, evaluation=evaluation, training=training, storage=self.storage)

    def _run_engine(self, spec: JobSpec, device: str) -> dict[str, Any]:
        from workers.data import DataError
        from workers.onnx_model import ModelError
        from workers.pipeline import run_audit

        try:
            return run_audit(
                spec,
                out_dir=self.storage.audit_dir(self.audit_id),
                base_dir=self.storage.root,
                progress=self._on_progress,
                device=device,
                resume=(self.attempt or 1) > 1,
            )
        except (SpecError, ModelError, DataError) as error:
            raise _InvalidInput(str(error)) from error
        except TRANSIENT_ERRORS as error:
            raise RetryableJobError(self.attempt) from error

    def _on_progress(self, event: dict[str, Any]) -> None:
        # NOTE: the engine calls back between variants and training epochs only, so a cancelled or
        # deleted job keeps its worker busy until the variant in progress ends.
        if self.heartbeat is not None and self.heartbeat.lost.is_set():
            raise JobAborted("the job is no longer owned by this attempt")
        if time.monotonic() > self.deadline:
            raise JobTimedOut()
        if event.get("event") == "variant_finished":
            logger.info(
                "variant %s %s (%s of %s)",
                event.get("variant"),
                event.get("status"),
                int(event.get("index", 0)) + 1,
                event.get("total"),
            )
        try:
            with session_scope(self.url) as session:
                owned = store.record_variant_event(
                    session, audit_id=self.audit_id, attempt=self.attempt, event=event, now=utcnow()
                )
        except TRANSIENT_ERRORS as error:
            # Progress is advisory: the report written at the end is the final word per variant.
            logger.warning("progress not written for variant %s: %s", event.get("variant"), error)
            return
        if not owned:
            raise JobAborted("the job is no longer owned by this attempt")

    def _beat(self) -> bool:
        with session_scope(self.url) as session:
            return store.beat(session, audit_id=self.audit_id, attempt=self.attempt, now=utcnow())

    def _finish(
        self, status: str, *, error: str | None = None, report_variants: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        delivery_id = None
        now = utcnow()
        try:
            with session_scope(self.url) as session:
                owned = store.finish_audit(
                    session,
                    audit_id=self.audit_id,
                    attempt=self.attempt,
                    status=status,
                    now=now,
                    error=error,
                    report_variants=report_variants,
                )
                if owned:
                    delivery_id = stage_delivery(session, audit_id=self.audit_id, status=status, now=now)
        except TRANSIENT_ERRORS as exception:
            raise RetryableJobError(self.attempt) from exception
        if not owned:
            return self._aborted()
        logger.info("job %s", status)
        if delivery_id is not None:
            send_delivery(self.celery, delivery_id)
        return {"audit_id": self.audit_id, "outcome": status, "attempt": self.attempt}

    def _aborted(self) -> dict[str, Any]:
        with session_scope(self.url) as session:
            audit = store.get_audit(session, audit_id=self.audit_id, owner=store.ANY_OWNER)
            status = audit.status if audit is not None else None
        if status is None:
            self.storage.remove_audit(self.audit_id)
            logger.info("job was deleted while it ran; its files are removed")
        else:
            logger.info("job stopped: it is now %s", status)
        return {"audit_id": self.audit_id, "outcome": "aborted", "status": status}


class _InvalidInput(Exception):
    """The engine rejected the job's model, data or spec; retrying cannot help."""
