"""The FastAPI application: routers, error handlers, and the start-up that migrates the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from celery import Celery
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.concurrency import run_in_threadpool

from service.db import upgrade_database
from service.errors import ApiError, format_request_errors
from service.metrics import create_registry
from service.recovery import recovery_loop
from service.routers import audits, datasets, health, models
from service.schemas.common import ErrorPublic
from service.settings import Settings, get_settings
from service.storage import ArtifactStorage
from workers.celery_app import create_celery

logger = logging.getLogger(__name__)

API_VERSION = "1.0.0"
DESCRIPTION = """\
Audit how compression (quantization, pruning, low-rank factorization) changes the per-group fairness
of an ONNX classifier.

Upload a model (`POST /v1/models`) and labelled tables (`POST /v1/datasets`), submit a job spec naming
their ids (`POST /v1/audits`), poll the job until it succeeds, then download the report and the
compressed ONNX models. Errors return `{"detail": "..."}` naming the field and the value that failed.
"""


def create_app(settings: Settings | None = None, *, celery: Celery | None = None) -> FastAPI:
    """Build the app; the store is migrated and the storage folders are created when it starts."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(upgrade_database, settings.resolved_database_url)
        app.state.storage.ensure_layout()
        recovery = None
        if settings.recovery_interval > 0:
            recovery = asyncio.create_task(recovery_loop(settings, app.state.celery))
        logger.info(
            "API ready: data in %s; API keys %s",
            settings.resolved_data_dir,
            "required" if settings.require_api_key else "optional",
        )
        try:
            yield
        finally:
            if recovery is not None:
                recovery.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await recovery

    app = FastAPI(
        title="fairsqueeze",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,
        responses={422: {"model": ErrorPublic, "description": "Invalid request"}},
    )
    app.state.settings = settings
    app.state.storage = ArtifactStorage(settings.resolved_data_dir)
    app.state.celery = celery or create_celery(settings, results=False)
    app.state.metrics_registry = create_registry(settings.resolved_database_url)

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for router in (models.router, datasets.router, audits.router, health.router):
        app.include_router(router)
    return app


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)


async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    if error.status_code == 400 and error.detail == "There was an error parsing the body":
        return JSONResponse({"detail": "body: not valid JSON; send the job spec as a UTF-8 JSON object"}, status_code=400)
    return await http_exception_handler(request, error)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": format_request_errors(error.errors())}, status_code=422)
