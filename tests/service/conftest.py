"""Fixtures of the service tests: tiny files, an in-process app, and the PostgreSQL and Redis of CI."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.factories import export_tiny_mlp, write_tables

TEST_DATABASE_URL = os.environ.get("FAIRSQUEEZE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("FAIRSQUEEZE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class TinyFiles:
    model: Path
    evaluation: Path
    training: Path


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> TinyFiles:
    folder = tmp_path_factory.mktemp("tiny")
    model = export_tiny_mlp(folder / "mlp.onnx")
    evaluation, training = write_tables(folder, rows=400, seed=0)
    return TinyFiles(model=model, evaluation=evaluation, training=training)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", recovery_interval=0, max_upload_bytes=200_000)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


# PostgreSQL and Redis, for tests marked `services`.


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards; the URL selects it by search_path."""
    import psycopg

    plain = TEST_DATABASE_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        connection = psycopg.connect(plain, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {plain}: {error}. Start it (bash scripts/services.sh) or set "
            "FAIRSQUEEZE_TEST_DATABASE_URL"
        )
    schema = f"fairsqueeze_test_{uuid.uuid4().hex[:12]}"
    with connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
        separator = "&" if "?" in plain else "?"
        yield f"{plain}{separator}options={quote(f'-csearch_path={schema}')}"
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def redis_settings() -> Iterator[dict[str, str]]:
    """Broker settings on the test Redis with a key prefix of their own, removed afterwards."""
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as error:
        pytest.fail(
            f"Redis is not reachable at {TEST_REDIS_URL}: {error}. Start it (bash scripts/services.sh) or set "
            "FAIRSQUEEZE_TEST_REDIS_URL"
        )
    prefix = f"fairsqueeze-test-{uuid.uuid4().hex[:12]}:"
    yield {"FAIRSQUEEZE_BROKER_URL": TEST_REDIS_URL, "FAIRSQUEEZE_BROKER_KEY_PREFIX": prefix}
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()
