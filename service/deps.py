"""Dependencies of the routes, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.db import session_factory
from service.settings import Settings
from service.storage import ArtifactStorage


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_storage(request: Request) -> ArtifactStorage:
    return request.app.state.storage


def get_celery(request: Request) -> Celery:
    return request.app.state.celery


def get_session(settings: Annotated[Settings, Depends(get_app_settings)]) -> Iterator[Session]:
    session = session_factory(settings.resolved_database_url)()
    try:
        yield session
    finally:
        session.close()


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StorageDep = Annotated[ArtifactStorage, Depends(get_storage)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
SessionDep = Annotated[Session, Depends(get_session)]
