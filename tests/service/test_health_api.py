"""/healthz, /readyz and /metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings
from tests.service.client import upload_ok
from tests.service.factories import job_spec


def test_healthz_reports_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_with_embedded_stores(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    assert response.json()["broker"] == "ok"


def test_readyz_names_unreachable_broker(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", broker_url="redis://127.0.0.1:9/0", recovery_interval=0)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["detail"] == "broker unreachable"
    assert response.json()["database"] == "ok"
    assert response.json()["broker"].startswith("unreachable: ")


def test_readyz_names_unreachable_database(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", recovery_interval=0)
    with TestClient(create_app(settings)) as client:
        client.app.state.settings = settings.model_copy(
            update={"database_url": "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2"}
        )
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["detail"] == "database unreachable"
    assert response.json()["broker"] == "ok"


def test_metrics_count_jobs_by_status(client, tiny_files):
    spec = job_spec(
        upload_ok(client, "/v1/models", tiny_files.model)["id"],
        upload_ok(client, "/v1/datasets", tiny_files.evaluation)["id"],
    )
    client.post("/v1/audits", json=spec)
    cancelled = client.post("/v1/audits", json=spec).json()["id"]
    client.post(f"/v1/audits/{cancelled}/cancel")

    response = client.get("/metrics")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    jobs = {sample.labels["status"]: sample.value for sample in families["fairsqueeze_jobs"].samples}
    depth = {sample.labels["queue"]: sample.value for sample in families["fairsqueeze_queue_depth"].samples}

    assert response.status_code == 200
    assert jobs == {"queued": 1, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 1}
    assert depth == {"cpu": 1, "gpu": 0}
    assert families["fairsqueeze_job_duration_seconds"].type == "histogram"
    assert families["fairsqueeze_variant_duration_seconds"].type == "histogram"
