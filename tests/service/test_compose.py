"""docker-compose.yml: Docker cannot run here, so the file is checked as data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_defines_four_services(compose):
    assert set(compose["services"]) == {"api", "worker", "redis", "postgres"}


@pytest.mark.parametrize("name", ["api", "worker", "redis", "postgres"])
def test_every_service_has_healthcheck(compose, name):
    healthcheck = compose["services"][name]["healthcheck"]

    assert healthcheck["test"][0] in ("CMD", "CMD-SHELL")
    assert len(healthcheck["test"]) > 1


def test_worker_reserves_a_gpu(compose):
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]

    assert devices[0]["driver"] == "nvidia"
    assert devices[0]["capabilities"] == ["gpu"]


def test_api_and_worker_share_artifacts(compose):
    api = compose["services"]["api"]
    worker = compose["services"]["worker"]

    assert "artifacts:/data" in api["volumes"]
    assert "artifacts:/data" in worker["volumes"]
    assert "artifacts" in compose["volumes"]
    assert api["environment"]["FAIRSQUEEZE_DATA_DIR"] == "/data"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_app_services_use_redis_and_postgres(compose, name):
    service = compose["services"][name]

    assert service["environment"]["FAIRSQUEEZE_BROKER_URL"].startswith("redis://redis:")
    assert service["environment"]["FAIRSQUEEZE_DATABASE_URL"].startswith("postgresql://")
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_commands_use_the_cli(compose):
    api = compose["services"]["api"]["command"]
    worker = compose["services"]["worker"]["command"]

    assert api[:3] == ["fairsqueeze", "serve", "--no-worker"]
    assert worker[:2] == ["fairsqueeze", "worker"]
    assert "gpu" in worker[worker.index("--queues") + 1].split(",")


def test_compose_settings_are_valid():
    from service.settings import Settings

    compose_settings = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["x-settings"]
    fields = {key.removeprefix("FAIRSQUEEZE_").lower(): value for key, value in compose_settings.items()}
    settings = Settings(**fields)

    assert settings.resolved_visibility_timeout > settings.hard_time_limit
    assert settings.broker_uses_redis


def test_dockerfile_builds_from_compose_context(compose):
    build = compose["services"]["api"]["build"]

    assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file()
