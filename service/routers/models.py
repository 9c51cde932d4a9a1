"""/v1/models: upload ONNX classifiers and read their records."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from service import store
from service.auth import CallerDep
from service.db import session_scope
from service.deps import SessionDep, SettingsDep, StorageDep
from service.errors import ApiError
from service.schemas.common import MAX_OFFSET, error_responses
from service.schemas.models import ModelPublic, ModelsPublic
from service.settings import Settings
from service.storage import ArtifactStorage, safe_filename
from service.tables import ModelRecord, utcnow
from service.uploads import ReceivedFile, multipart_request_body, receive_file

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/models", tags=["models"], responses=error_responses(401))


@router.post(
    "",
    status_code=201,
    response_model=ModelPublic,
    responses={
        200: {"model": ModelPublic, "description": "The same bytes were uploaded before: the existing record"},
        201: {
            "description": "A new model record",
            "links": {"get_model": {"operationId": "get_model", "parameters": {"model_id": "$response.body#/id"}}},
        },
        **error_responses(413, 415, 422),
    },
    openapi_extra=multipart_request_body("ONNX model file"),
)
async def upload_model(
    request: Request, response: Response, caller: CallerDep, settings: SettingsDep, storage: StorageDep
) -> ModelPublic:
    """Upload an ONNX classifier in the multipart field `file`; the same bytes return the same record."""
    received = await receive_file(request, storage=storage, max_bytes=settings.max_upload_bytes, suffix=".onnx")
    record, created = await run_in_threadpool(
        register_model, received, owner=caller.key_id, settings=settings, storage=storage
    )
    if not created:
        response.status_code = 200
    return ModelPublic.model_validate(record)


@router.get("", response_model=ModelsPublic, responses=error_responses(422))
def list_models(
    session: SessionDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Records per page.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Records to skip.")] = 0,
) -> ModelsPublic:
    """List uploaded models, newest first."""
    records, count = store.list_models(session, owner=caller.key_id, limit=limit, offset=offset)
    return ModelsPublic(data=[ModelPublic.model_validate(record) for record in records], count=count)


@router.get("/{model_id}", response_model=ModelPublic, responses=error_responses(404))
def get_model(model_id: str, session: SessionDep, caller: CallerDep) -> ModelPublic:
    """Read one model record."""
    record = store.get_model(session, model_id=model_id, owner=caller.key_id)
    if record is None:
        raise ApiError(404, f"model '{model_id}' not found")
    return ModelPublic.model_validate(record)


def register_model(
    received: ReceivedFile, *, owner: str | None, settings: Settings, storage: ArtifactStorage
) -> tuple[ModelRecord, bool]:
    """Validate an uploaded file as an ONNX model and store it for `owner` (an API key id, or None).

    Returns the record and whether it is new: the same bytes uploaded again by the same owner give
    the existing record, and by another owner a record of its own.
    """
    from workers.onnx_model import ModelError, describe_model

    url = settings.resolved_database_url
    existing = _find_by_sha256(url, received.sha256, owner)
    if existing is not None:
        received.path.unlink(missing_ok=True)
        return existing, False

    filename = safe_filename(received.filename, default="model.onnx")
    try:
        facts = describe_model(received.path)
    except ModelError as error:
        received.path.unlink(missing_ok=True)
        # The message names the temporary file; the client knows the upload by its own file name.
        message = str(error).replace(str(received.path), filename)
        raise ApiError(422, f"file: {message}") from error

    model_id = uuid.uuid4().hex
    storage.place(received.path, storage.model_path(model_id))
    record = ModelRecord(
        id=model_id,
        owner_key_id=owner,
        sha256=received.sha256,
        filename=filename,
        bytes=received.bytes,
        opset=facts.get("opset"),
        inputs=facts["inputs"],
        outputs=facts["outputs"],
        parameters=int(facts["parameters"]),
        created_at=utcnow(),
    )
    try:
        with session_scope(url) as session:
            session.add(record)
    except IntegrityError:
        # A concurrent upload of the same bytes committed first; keep its record and drop this copy.
        storage.remove_tree(storage.model_dir(model_id))
        existing = _find_by_sha256(url, received.sha256, owner)
        if existing is None:
            raise
        return existing, False
    logger.info("model %s stored (%d bytes, sha256 %s)", model_id, received.bytes, received.sha256)
    return record, True


def _find_by_sha256(url: str, sha256: str, owner: str | None) -> ModelRecord | None:
    with session_scope(url) as session:
        return store.find_model_by_sha256(session, sha256=sha256, owner=owner)
