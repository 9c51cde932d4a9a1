"""Accept an audit job: check it against the stored files, record it, and put it on its queue."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid

import kombu.exceptions
import sqlalchemy.exc
from celery import Celery
from sqlalchemy.exc import IntegrityError

from service import store
from service.db import session_scope
from service.errors import ApiError
from service.jobspecs import resolve_paths
from service.logs import job_context
from service.settings import Settings
from service.storage import ArtifactStorage
from service.tables import AuditRecord, DatasetRecord, ModelRecord, utcnow
from workers.celery_app import RUN_AUDIT_TASK, job_trains, queue_for
from workers.spec import JobSpec

logger = logging.getLogger(__name__)

# Errors of the broker connection while sending: Redis, and kombu's SQLAlchemy transport.
SEND_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    kombu.exceptions.OperationalError,
    sqlalchemy.exc.OperationalError,
)


def spec_sha256(spec: JobSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def variant_plan(spec: JobSpec) -> list[tuple[str, str]]:
    """Return (name, method) for every variant the engine builds, the base model first."""
    plan = [("base", "none")]
    for recipe in spec.resolved_recipes():
        plan.append((recipe.name, "+".join(step.method for step in recipe.steps)))
    return plan


def enqueue(celery: Celery, *, audit_id: str, queue: str) -> None:
    """Send the job's id (never file contents) to its queue; raise ApiError 503 when the broker is down."""
    try:
        celery.send_task(
            RUN_AUDIT_TASK,
            args=[audit_id],
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0},
        )
    except SEND_ERRORS as error:
        raise ApiError(503, f"broker unreachable, the job was not queued: {error}; try again later") from error


def submit_audit(
    spec: JobSpec,
    *,
    owner: str | None,
    idempotency_key: str | None,
    settings: Settings,
    storage: ArtifactStorage,
    celery: Celery,
) -> tuple[AuditRecord, bool]:
    """Validate, record and enqueue a job of `owner` (an API key id, or None); return it and whether an
    earlier request already created it."""
    url = settings.resolved_database_url
    request_sha256 = spec_sha256(spec)
    if idempotency_key is not None:
        earlier = _earlier_request(url, idempotency_key, request_sha256, owner)
        if earlier is not None:
            return earlier, True

    _check_callback(spec, owner=owner, settings=settings)
    model, evaluation, training = _load_inputs(url, spec, owner)
    _check_inputs(spec, model=model, evaluation=evaluation, training=training, storage=storage)

    audit = AuditRecord(
        id=uuid.uuid4().hex,
        owner_key_id=owner,
        status="queued",
        queue=queue_for(spec),
        trains=job_trains(spec),
        spec=spec.model_dump(mode="json", exclude_unset=True),
        model_id=model.id,
        evaluation_dataset_id=evaluation.id,
        training_dataset_id=training.id if training is not None else None,
        idempotency_key=idempotency_key,
        request_sha256=request_sha256,
        created_at=utcnow(),
        attempts=0,
    )
    try:
        with session_scope(url) as session:
            store.add_audit(session, audit=audit, variants=variant_plan(spec))
    except IntegrityError:
        # Another request with the same Idempotency-Key committed first.
        if idempotency_key is None:
            raise
        earlier = _earlier_request(url, idempotency_key, request_sha256, owner)
        if earlier is None:
            raise
        return earlier, True

    with job_context(audit.id):
        try:
            enqueue(celery, audit_id=audit.id, queue=audit.queue)
        except ApiError:
            with session_scope(url) as session:
                store.delete_audit(session, audit_id=audit.id)
            logger.error("job dropped because the broker is unreachable")
            raise
        with session_scope(url) as session:
            store.mark_enqueued(session, audit_id=audit.id, now=utcnow())
        logger.info("job queued on %s (model %s)", audit.queue, model.id)

    with session_scope(url) as session:
        created = store.get_audit(session, audit_id=audit.id, owner=owner)
    if created is None:
        raise ApiError(409, f"audit '{audit.id}' was deleted while it was being created")
    return created, False


def _earlier_request(url: str, key: str, request_sha256: str, owner: str | None) -> AuditRecord | None:
    with session_scope(url) as session:
        earlier = store.get_audit_by_idempotency_key(session, key=key, owner=owner)
    if earlier is None:
        return None
    if earlier.request_sha256 != request_sha256:
        raise ApiError(
            409,
            f"header Idempotency-Key: the key {key!r} was used for audit '{earlier.id}' with a different body; "
            "use a new key for a different job",
        )
    return earlier


def _check_callback(spec: JobSpec, *, owner: str | None, settings: Settings) -> None:
    """Reject a callback URL that no secret could sign: a job without an API key needs the server's secret."""
    if spec.callback_url is None or owner is not None or settings.webhook_secret is not None:
        return
    raise ApiError(
        422,
        "callback_url: this job has no API key and the server has no webhook secret to sign deliveries with; "
        "send the job with an API key, or set FAIRSQUEEZE_WEBHOOK_SECRET on the server and its workers",
    )


def _load_inputs(
    url: str, spec: JobSpec, owner: str | None
) -> tuple[ModelRecord, DatasetRecord, DatasetRecord | None]:
    with session_scope(url) as session:
        model = store.get_model(session, model_id=spec.model, owner=owner)
        evaluation = store.get_dataset(session, dataset_id=spec.data.evaluation, owner=owner)
        training = None
        if spec.data.training is not None:
            training = store.get_dataset(session, dataset_id=spec.data.training, owner=owner)

    if model is None:
        raise ApiError(
            422, f"model: no model with id {spec.model!r}; upload it with POST /v1/models and use the id it returns"
        )
    if evaluation is None:
        raise ApiError(
            422,
            f"data.evaluation: no dataset with id {spec.data.evaluation!r}; upload it with POST /v1/datasets "
            "and use the id it returns",
        )
    if spec.data.training is not None and training is None:
        raise ApiError(
            422,
            f"data.training: no dataset with id {spec.data.training!r}; upload it with POST /v1/datasets "
            "and use the id it returns",
        )
    return model, evaluation, training


def _check_inputs(
    spec: JobSpec,
    *,
    model: ModelRecord,
    evaluation: DatasetRecord,
    training: DatasetRecord | None,
    storage: ArtifactStorage,
) -> None:
    # The engine module loads ONNX Runtime but not torch; it is imported here to keep the app's import light.
    from workers.data import DataError
    from workers.gate import GateError, check_policy
    from workers.onnx_model import ModelError
    from workers.pipeline import check_inputs
    from workers.spec import SpecError

    try:
        check_policy(spec)
    except GateError as error:
        raise ApiError(422, str(error)) from error
    resolved = resolve_paths(spec, model=model, evaluation=evaluation, training=training, storage=storage)
    try:
        check_inputs(resolved, base_dir=storage.root)
    except (SpecError, ModelError, DataError) as error:
        raise ApiError(422, str(error)) from error
