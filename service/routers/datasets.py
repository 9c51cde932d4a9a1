"""/v1/datasets: upload CSV, Parquet or NPZ tables and read their records."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from service import store
from service.auth import CallerDep
from service.db import session_scope
from service.deps import SessionDep, SettingsDep, StorageDep
from service.errors import ApiError
from service.schemas.common import MAX_OFFSET, error_responses
from service.schemas.datasets import DatasetPublic, DatasetsPublic
from service.settings import Settings
from service.storage import ArtifactStorage, safe_filename
from service.tables import DatasetRecord, utcnow
from service.uploads import ReceivedFile, multipart_request_body, receive_file

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=error_responses(401))


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    responses={
        201: {
            "description": "The new dataset record",
            "links": {
                "get_dataset": {"operationId": "get_dataset", "parameters": {"dataset_id": "$response.body#/id"}}
            },
        },
        **error_responses(413, 415, 422),
    },
    openapi_extra=multipart_request_body("CSV, Parquet or NPZ file; the name's extension gives the format"),
)
async def upload_dataset(
    request: Request,
    caller: CallerDep,
    settings: SettingsDep,
    storage: StorageDep,
    delimiter: Annotated[str, Query(min_length=1, max_length=1, description="CSV field delimiter.")] = ",",
) -> DatasetPublic:
    """Upload a table in the multipart field `file`; returns its columns with types and its row count."""
    received = await receive_file(request, storage=storage, max_bytes=settings.max_upload_bytes)
    record = await run_in_threadpool(
        register_dataset, received, delimiter=delimiter, owner=caller.key_id, settings=settings, storage=storage
    )
    return DatasetPublic.model_validate(record)


@router.get("", response_model=DatasetsPublic, responses=error_responses(422))
def list_datasets(
    session: SessionDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Records per page.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Records to skip.")] = 0,
) -> DatasetsPublic:
    """List uploaded datasets, newest first."""
    records, count = store.list_datasets(session, owner=caller.key_id, limit=limit, offset=offset)
    return DatasetsPublic(data=[DatasetPublic.model_validate(record) for record in records], count=count)


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=error_responses(404))
def get_dataset(dataset_id: str, session: SessionDep, caller: CallerDep) -> DatasetPublic:
    """Read one dataset record."""
    record = store.get_dataset(session, dataset_id=dataset_id, owner=caller.key_id)
    if record is None:
        raise ApiError(404, f"dataset '{dataset_id}' not found")
    return DatasetPublic.model_validate(record)


def register_dataset(
    received: ReceivedFile, *, delimiter: str, owner: str | None, settings: Settings, storage: ArtifactStorage
) -> DatasetRecord:
    """Read an uploaded table to check it and store it under a new id for `owner` (an API key id, or None)."""
    from workers.data import DataError, describe_table, table_format

    filename = safe_filename(received.filename, default="")
    try:
        if not filename:
            raise DataError("the upload has no file name; send one ending in .csv, .parquet or .npz")
        table_format(Path(filename))
    except DataError as error:
        received.path.unlink(missing_ok=True)
        raise ApiError(422, f"file: {error}") from error

    dataset_id = uuid.uuid4().hex
    path = storage.dataset_path(dataset_id, filename)
    storage.place(received.path, path)
    try:
        facts = describe_table(path, delimiter=delimiter)
    except DataError as error:
        storage.remove_tree(storage.dataset_dir(dataset_id))
        raise ApiError(422, f"file: {error}") from error

    record = DatasetRecord(
        id=dataset_id,
        owner_key_id=owner,
        sha256=received.sha256,
        filename=filename,
        format=facts["format"],
        bytes=received.bytes,
        rows=int(facts["rows"]),
        columns=facts["columns"],
        delimiter=delimiter,
        created_at=utcnow(),
    )
    with session_scope(settings.resolved_database_url) as session:
        session.add(record)
    logger.info("dataset %s stored (%s, %d rows)", dataset_id, record.format, record.rows)
    return record
