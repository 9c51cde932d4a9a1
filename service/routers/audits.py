"""/v1/audits: submit audit jobs, follow them, and fetch their report and ONNX variants."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import FileResponse

from service import store
from service.auth import Caller, CallerDep
from service.deps import CeleryDep, SessionDep, SettingsDep, StorageDep
from service.errors import ApiError
from service.logs import job_context
from service.schemas.audits import AUDIT_CREATE_EXAMPLE, AuditPublic, AuditsPublic, AuditStatus
from service.schemas.common import MAX_OFFSET, error_responses
from service.schemas.webhooks import DeliveriesPublic, DeliveryPublic
from service.storage import HTML_REPORT_FILENAME, VARIANT_NAME_PATTERN
from service.submission import submit_audit
from service.tables import AuditRecord, utcnow
from service.webhooks import send_delivery, stage_delivery
from workers.spec import JobSpec

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/audits", tags=["audits"], responses=error_responses(401))

LOCATION_HEADER = {
    "Location": {"description": "URL of the job: GET it to follow progress.", "schema": {"type": "string"}}
}
REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "description": "'true' when an earlier request with the same Idempotency-Key created the job.",
        "schema": {"type": "string", "enum": ["true", "false"]},
    }
}


@router.post(
    "",
    status_code=202,
    response_model=AuditPublic,
    responses={
        202: {
            "description": "The job is queued",
            "headers": {**LOCATION_HEADER, **REPLAYED_HEADER},
            "links": {
                operation: {"operationId": operation, "parameters": {"audit_id": "$response.body#/id"}}
                for operation in (
                    "get_audit",
                    "get_report",
                    "get_report_html",
                    "list_deliveries",
                    "cancel_audit",
                    "delete_audit",
                )
            },
        },
        **error_responses(400, 409, 422, 503),
    },
)
def create_audit(
    spec: Annotated[
        JobSpec,
        Body(
            description="A job spec (the CLI's YAML schema) whose model and data tables are ids from the uploads.",
            openapi_examples={"two recipes": {"summary": "int8 and fp16 of one model", "value": AUDIT_CREATE_EXAMPLE}},
        ),
    ],
    response: Response,
    caller: CallerDep,
    settings: SettingsDep,
    storage: StorageDep,
    celery: CeleryDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="Repeat a request safely: the same key with the same body returns the same job.",
        ),
    ] = None,
) -> AuditPublic:
    """Validate a job against its model and tables, then queue it."""
    audit, replayed = submit_audit(
        spec, owner=caller.key_id, idempotency_key=idempotency_key, settings=settings, storage=storage, celery=celery
    )
    response.headers["Location"] = f"/v1/audits/{audit.id}"
    response.headers["Idempotent-Replayed"] = "true" if replayed else "false"
    return AuditPublic.from_record(audit)


@router.get("", response_model=AuditsPublic, responses=error_responses(422))
def list_audits(
    session: SessionDep,
    caller: CallerDep,
    status: Annotated[AuditStatus | None, Query(description="Only jobs with this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Jobs per page.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Jobs to skip.")] = 0,
) -> AuditsPublic:
    """List jobs, newest first, optionally with one status."""
    records, count = store.list_audits(session, owner=caller.key_id, status=status, limit=limit, offset=offset)
    return AuditsPublic(data=[AuditPublic.from_record(record) for record in records], count=count)


@router.get("/{audit_id}", response_model=AuditPublic, responses=error_responses(404))
def get_audit(audit_id: str, session: SessionDep, caller: CallerDep) -> AuditPublic:
    """Read a job's status, progress per variant, timestamps and error."""
    return AuditPublic.from_record(_require_audit(session, audit_id, caller))


@router.get(
    "/{audit_id}/report",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The report (schema version 1)",
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
        },
        **error_responses(404, 409),
    },
)
def get_report(audit_id: str, session: SessionDep, caller: CallerDep, storage: StorageDep) -> FileResponse:
    """Download the report of a succeeded job."""
    audit = _require_audit(session, audit_id, caller)
    path = storage.report_path(audit.id)
    if audit.status != "succeeded" or not path.is_file():
        raise ApiError(409, f"audit '{audit_id}' has no report: its status is {audit.status}")
    return FileResponse(path, media_type="application/json", filename=f"{audit.id}-report.json")


@router.get(
    "/{audit_id}/report.html",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The report as one self-contained HTML page",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        **error_responses(404),
    },
)
def get_report_html(audit_id: str, session: SessionDep, caller: CallerDep, storage: StorageDep) -> FileResponse:
    """Open the HTML report of a succeeded job; 404 until the job has succeeded."""
    audit = _require_audit(session, audit_id, caller)
    path = storage.audit_dir(audit.id) / HTML_REPORT_FILENAME
    if audit.status != "succeeded":
        raise ApiError(404, f"audit '{audit_id}' has no HTML report yet: its status is {audit.status}")
    if not path.is_file():
        raise ApiError(404, f"audit '{audit_id}' has no HTML report: the worker could not write it; see its log")
    return FileResponse(path, media_type="text/html; charset=utf-8")


@router.get("/{audit_id}/deliveries", response_model=DeliveriesPublic, responses=error_responses(404))
def list_deliveries(audit_id: str, session: SessionDep, caller: CallerDep) -> DeliveriesPublic:
    """List the job's webhook deliveries with every POST attempt: status code, error and time."""
    audit = _require_audit(session, audit_id, caller)
    deliveries = store.list_deliveries(session, audit_id=audit.id)
    return DeliveriesPublic(data=[DeliveryPublic.from_record(item) for item in deliveries], count=len(deliveries))


@router.get(
    "/{audit_id}/variants/{name}/model.onnx",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The variant's ONNX model ('base' is the uploaded model)",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        },
        **error_responses(404),
    },
)
def get_variant_model(
    audit_id: str, name: str, session: SessionDep, caller: CallerDep, storage: StorageDep
) -> FileResponse:
    """Download the ONNX file of one variant."""
    audit = _require_audit(session, audit_id, caller)
    known = {variant.name for variant in audit.variants}
    if name not in known or not VARIANT_NAME_PATTERN.match(name):
        raise ApiError(404, f"audit '{audit_id}' has no variant {name!r}; its variants: {', '.join(sorted(known))}")
    path = storage.variant_path(audit.id, name)
    if not path.is_file():
        variant = next(variant for variant in audit.variants if variant.name == name)
        raise ApiError(404, f"variant {name!r} of audit '{audit_id}' has no ONNX file: its status is {variant.status}")
    return FileResponse(path, media_type="application/octet-stream", filename=f"{name}.onnx")


@router.post("/{audit_id}/cancel", response_model=AuditPublic, responses=error_responses(404, 409))
def cancel_audit(audit_id: str, session: SessionDep, caller: CallerDep, celery: CeleryDep) -> AuditPublic:
    """Cancel a queued or running job; a running one stops before its next variant."""
    audit = _require_audit(session, audit_id, caller)
    with job_context(audit_id):
        now = utcnow()
        if not store.cancel_audit(session, audit_id=audit_id, now=now):
            raise ApiError(409, f"audit '{audit_id}' cannot be cancelled: it has already {audit.status}")
        delivery_id = stage_delivery(session, audit_id=audit_id, status="cancelled", now=now)
        session.commit()
        logger.info("job cancelled")
        if delivery_id is not None:
            send_delivery(celery, delivery_id)
    return AuditPublic.from_record(_require_audit(session, audit_id, caller, refresh=True))


@router.delete("/{audit_id}", status_code=204, responses=error_responses(404))
def delete_audit(audit_id: str, session: SessionDep, caller: CallerDep, storage: StorageDep) -> Response:
    """Delete a job, its report and its ONNX files; a running job stops after its current variant."""
    _require_audit(session, audit_id, caller)
    with job_context(audit_id):
        store.delete_audit(session, audit_id=audit_id)
        session.commit()
        storage.remove_audit(audit_id)
        logger.info("job deleted with its files")
    return Response(status_code=204)


def _require_audit(session: SessionDep, audit_id: str, caller: Caller, *, refresh: bool = False) -> AuditRecord:
    """Return the caller's job; another key's job is 404 like a missing one, so its existence stays hidden."""
    if refresh:
        session.expire_all()
    audit = store.get_audit(session, audit_id=audit_id, owner=caller.key_id)
    if audit is None:
        raise ApiError(404, f"audit '{audit_id}' not found")
    return audit
