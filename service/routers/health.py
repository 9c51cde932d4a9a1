"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import logging

from celery import Celery
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from service.db import get_engine, ping
from service.deps import CeleryDep, SettingsDep
from service.schemas.health import HealthPublic, ReadinessPublic

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

SQLALCHEMY_BROKER_PREFIXES = ("sqla+", "sqlalchemy+")


@router.get("/healthz", response_model=HealthPublic)
def healthz() -> HealthPublic:
    """Report that the process is up."""
    return HealthPublic(status="ok")


@router.get(
    "/readyz",
    response_model=ReadinessPublic,
    responses={503: {"model": ReadinessPublic, "description": "The database or the broker is unreachable"}},
)
def readyz(settings: SettingsDep, celery: CeleryDep) -> Response:
    """Check that the job store and the broker are reachable."""
    database = _check(lambda: ping(settings.resolved_database_url))
    broker = _check(lambda: ping_broker(celery))
    failed = [name for name, state in (("database", database), ("broker", broker)) if state != "ok"]
    body = ReadinessPublic(
        status="unavailable" if failed else "ready",
        database=database,
        broker=broker,
        detail=f"{' and '.join(failed)} unreachable" if failed else None,
    )
    if failed:
        logger.warning("not ready: database %s; broker %s", database, broker)
    return JSONResponse(body.model_dump(mode="json"), status_code=503 if failed else 200)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    """Export jobs by status, queue depth, and job and variant durations for Prometheus."""
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)


def ping_broker(celery: Celery) -> None:
    """Open a connection to the broker and run one round trip; raise when it is unreachable."""
    url = str(celery.conf.broker_url)
    for prefix in SQLALCHEMY_BROKER_PREFIXES:
        if url.startswith(prefix):
            with get_engine(url[len(prefix) :]).connect() as connection:
                connection.execute(text("SELECT 1"))
            return
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
        client = getattr(connection.default_channel, "client", None)
        if client is not None and hasattr(client, "ping"):
            client.ping()


def _check(probe) -> str:
    try:
        probe()
    except Exception as error:
        return f"unreachable: {type(error).__name__}: {error}"
    return "ok"
