"""POST, GET, cancel and DELETE on /v1/audits with the in-process app and no worker."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.client import upload_ok
from tests.service.factories import job_spec


@pytest.fixture
def uploaded(client, tiny_files) -> dict[str, str]:
    return {
        "model": upload_ok(client, "/v1/models", tiny_files.model)["id"],
        "evaluation": upload_ok(client, "/v1/datasets", tiny_files.evaluation)["id"],
        "training": upload_ok(client, "/v1/datasets", tiny_files.training)["id"],
    }


@pytest.fixture
def spec(uploaded) -> dict:
    return job_spec(uploaded["model"], uploaded["evaluation"], uploaded["training"])


def test_submit_queues_job(client, spec):
    response = client.post("/v1/audits", json=spec)
    body = response.json()

    assert response.status_code == 202
    assert response.headers["location"] == f"/v1/audits/{body['id']}"
    assert body["status"] == "queued"
    assert body["queue"] == "cpu"
    assert body["trains"] is False
    assert [variant["name"] for variant in body["variants"]] == ["base", "int8-dynamic", "fp16"]
    assert {variant["status"] for variant in body["variants"]} == {"pending"}
    assert body["progress"]["total"] == 3
    assert body["spec"]["model"] == spec["model"]


def test_broker_message_carries_only_id(client, spec, settings):
    audit_id = client.post("/v1/audits", json=spec).json()["id"]
    with sqlite3.connect(settings.resolved_data_dir / "broker.db") as connection:
        payloads = [row[0] for row in connection.execute("SELECT payload FROM kombu_message")]
    message = json.loads(payloads[0])
    arguments, keyword_arguments, _ = json.loads(base64.b64decode(message["body"]))

    assert len(payloads) == 1
    assert arguments == [audit_id]
    assert keyword_arguments == {}
    assert len(payloads[0]) < 4096


def test_same_idempotency_key_same_job(client, spec):
    headers = {"Idempotency-Key": "job-42"}
    first = client.post("/v1/audits", json=spec, headers=headers)
    second = client.post("/v1/audits", json=spec, headers=headers)

    assert second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert first.headers["idempotent-replayed"] == "false"
    assert second.headers["idempotent-replayed"] == "true"
    assert client.get("/v1/audits").json()["count"] == 1


def test_idempotency_key_other_body_conflicts(client, spec):
    headers = {"Idempotency-Key": "job-43"}
    client.post("/v1/audits", json=spec, headers=headers)
    other = dict(spec, seed=7)
    response = client.post("/v1/audits", json=other, headers=headers)

    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["detail"]
    assert client.get("/v1/audits").json()["count"] == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda spec: spec["data"].update(label="income"), "income"),
        (lambda spec: spec["data"].update(positive_label=7), "7"),
        (lambda spec: spec["data"].update(features=["f0", "f1", "f9"]), "f9"),
        (lambda spec: spec["data"].update(sensitive=["race"]), "race"),
        (lambda spec: spec["recipes"][0]["steps"][0].update(method="squeeze"), "recipes.0.steps.0.method"),
        (lambda spec: spec["data"].pop("label"), "data.label: field required"),
        (lambda spec: spec["bootstrap"].update(resamples=-1), "bootstrap.resamples"),
        (lambda spec: spec.update(model="no-such-model"), "model: no model with id 'no-such-model'"),
        (lambda spec: spec["data"].update(evaluation="nothing"), "data.evaluation: no dataset with id 'nothing'"),
        (lambda spec: spec["data"].update(training="nothing"), "data.training: no dataset with id 'nothing'"),
        (lambda spec: spec.update(callback_url="ftp://127.0.0.1/hook"), "callback_url: expected an absolute http"),
        (
            lambda spec: spec.update(gate={"rules": [{"metric": "eod", "attribute": "sex", "max": 0.1}]}),
            "unknown metric 'eod'",
        ),
    ],
)
def test_invalid_spec_names_field(client, spec, change, expected):
    change(spec)
    response = client.post("/v1/audits", json=spec)

    assert response.status_code == 422
    assert expected in response.json()["detail"]
    assert client.get("/v1/audits").json()["count"] == 0


def test_training_same_as_evaluation_rejected(client, spec):
    spec["data"]["training"] = spec["data"]["evaluation"]
    response = client.post("/v1/audits", json=spec)

    assert response.status_code == 422
    assert "data.training" in response.json()["detail"]


def test_malformed_json_rejected(client):
    response = client.post("/v1/audits", content=b"{not json", headers={"content-type": "application/json"})

    assert response.status_code in (400, 422)
    assert "body" in response.json()["detail"]


def test_list_filters_by_status(client, spec):
    first = client.post("/v1/audits", json=spec).json()["id"]
    client.post("/v1/audits", json=spec)
    client.post(f"/v1/audits/{first}/cancel")

    cancelled = client.get("/v1/audits", params={"status": "cancelled"}).json()
    queued = client.get("/v1/audits", params={"status": "queued"}).json()
    page = client.get("/v1/audits", params={"limit": 1, "offset": 1}).json()

    assert [audit["id"] for audit in cancelled["data"]] == [first]
    assert queued["count"] == 1
    assert page["count"] == 2
    assert len(page["data"]) == 1


def test_unknown_status_filter_rejected(client):
    response = client.get("/v1/audits", params={"status": "done"})

    assert response.status_code == 422
    assert "query parameter status" in response.json()["detail"]


def test_cancel_queued_job(client, spec):
    audit_id = client.post("/v1/audits", json=spec).json()["id"]
    cancelled = client.post(f"/v1/audits/{audit_id}/cancel")
    again = client.post(f"/v1/audits/{audit_id}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    assert again.status_code == 409


def test_report_of_queued_job_conflicts(client, spec):
    audit_id = client.post("/v1/audits", json=spec).json()["id"]
    response = client.get(f"/v1/audits/{audit_id}/report")

    assert response.status_code == 409
    assert "queued" in response.json()["detail"]


def test_unknown_variant_not_found(client, spec):
    audit_id = client.post("/v1/audits", json=spec).json()["id"]
    unknown = client.get(f"/v1/audits/{audit_id}/variants/int4/model.onnx")
    not_built = client.get(f"/v1/audits/{audit_id}/variants/fp16/model.onnx")

    assert unknown.status_code == 404
    assert "base, fp16, int8-dynamic" in unknown.json()["detail"]
    assert not_built.status_code == 404
    assert "pending" in not_built.json()["detail"]


def test_delete_removes_job_and_files(client, spec, settings):
    audit_id = client.post("/v1/audits", json=spec).json()["id"]
    folder = settings.resolved_data_dir / "audits" / audit_id
    folder.mkdir(parents=True)
    (folder / "report.json").write_text("{}")

    response = client.delete(f"/v1/audits/{audit_id}")

    assert response.status_code == 204
    assert not folder.exists()
    assert client.get(f"/v1/audits/{audit_id}").status_code == 404
    assert client.delete(f"/v1/audits/{audit_id}").status_code == 404


def test_unreachable_broker_rejects_job(tmp_path, tiny_files):
    settings = Settings(data_dir=tmp_path / "data", broker_url="redis://127.0.0.1:9/0", recovery_interval=0)
    with TestClient(create_app(settings)) as client:
        spec = job_spec(
            upload_ok(client, "/v1/models", tiny_files.model)["id"],
            upload_ok(client, "/v1/datasets", tiny_files.evaluation)["id"],
        )
        response = client.post("/v1/audits", json=spec)

        assert response.status_code == 503
        assert "broker unreachable" in response.json()["detail"]
        assert client.get("/v1/audits").json()["count"] == 0


def test_training_recipe_goes_to_gpu_queue(client, spec):
    spec["recipes"] = [{"name": "prune-then-finetune", "steps": [{"method": "prune", "sparsity": 0.5}, {"method": "finetune", "epochs": 1}]}]
    response = client.post("/v1/audits", json=spec)

    assert response.status_code == 202, response.text
    assert response.json()["queue"] == "gpu"
    assert response.json()["trains"] is True


def test_report_html_missing_before_success(client, spec):
    audit_id = client.post("/v1/audits", json=spec).json()["id"]
    response = client.get(f"/v1/audits/{audit_id}/report.html")

    assert response.status_code == 404
    assert "status is queued" in response.json()["detail"]


def test_report_html_served_as_html(client, spec, settings):
    from service import store
    from service.db import session_scope

    audit_id = client.post("/v1/audits", json=spec).json()["id"]
    folder = settings.resolved_data_dir / "audits" / audit_id
    folder.mkdir(parents=True)
    (folder / "report.html").write_text("<!doctype html><title>report</title>", encoding="utf-8")
    with session_scope(settings.resolved_database_url) as session:
        store.get_audit(session, audit_id=audit_id, owner=store.ANY_OWNER).status = "succeeded"
    response = client.get(f"/v1/audits/{audit_id}/report.html")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == "<!doctype html><title>report</title>"


def test_job_without_callback_has_no_deliveries(client, spec):
    audit_id = client.post("/v1/audits", json=spec).json()["id"]
    client.post(f"/v1/audits/{audit_id}/cancel")
    response = client.get(f"/v1/audits/{audit_id}/deliveries")

    assert response.status_code == 200
    assert response.json() == {"data": [], "count": 0}
