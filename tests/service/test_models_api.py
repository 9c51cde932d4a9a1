"""POST and GET /v1/models on the in-process app."""

from __future__ import annotations

from pathlib import Path

from tests.service.client import upload, upload_ok


def test_upload_returns_model_facts(client, tiny_files, settings):
    response = upload(client, "/v1/models", tiny_files.model)
    body = response.json()

    assert response.status_code == 201
    assert body["opset"] == 17
    assert body["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 4]}]
    assert body["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 2]}]
    assert body["parameters"] == 4 * 8 + 8 + 8 * 2 + 2
    assert body["bytes"] == tiny_files.model.stat().st_size
    assert len(body["sha256"]) == 64
    stored = settings.resolved_data_dir / "models" / body["id"] / "model.onnx"
    assert stored.read_bytes() == tiny_files.model.read_bytes()


def test_same_bytes_same_record(client, tiny_files, settings):
    first = upload(client, "/v1/models", tiny_files.model)
    second = upload(client, "/v1/models", tiny_files.model)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert len(list((settings.resolved_data_dir / "models").iterdir())) == 1
    assert client.get("/v1/models").json()["count"] == 1


def test_invalid_onnx_rejected(client, tmp_path: Path, settings):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"this is not a protobuf")
    response = upload(client, "/v1/models", path)

    assert response.status_code == 422
    assert response.json()["detail"].startswith("file: ")
    assert "broken.onnx" in response.json()["detail"]
    assert str(settings.resolved_data_dir) not in response.json()["detail"]
    assert list((settings.resolved_data_dir / "tmp").iterdir()) == []


def test_upload_over_limit_rejected(client, tmp_path: Path, settings):
    path = tmp_path / "large.onnx"
    path.write_bytes(b"\0" * (settings.max_upload_bytes + 1))
    response = upload(client, "/v1/models", path)

    assert response.status_code == 413
    assert str(settings.max_upload_bytes) in response.json()["detail"]
    assert list((settings.resolved_data_dir / "tmp").iterdir()) == []


def test_declared_length_over_limit_rejected(client, settings):
    headers = {
        "content-type": "multipart/form-data; boundary=x",
        "content-length": str(settings.max_upload_bytes + (2 << 20)),
    }
    response = client.post("/v1/models", content=b"--x--\r\n", headers=headers)

    assert response.status_code == 413


def test_json_body_rejected(client):
    response = client.post("/v1/models", json={"file": "model.onnx"})

    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_missing_file_field_rejected(client, tiny_files):
    with tiny_files.model.open("rb") as handle:
        response = client.post("/v1/models", files={"model": ("mlp.onnx", handle)})

    assert response.status_code == 422
    assert response.json()["detail"].startswith("file: missing")


def test_get_unknown_model(client):
    response = client.get("/v1/models/nope")

    assert response.status_code == 404
    assert "'nope'" in response.json()["detail"]


def test_get_model_by_id(client, tiny_files):
    created = upload_ok(client, "/v1/models", tiny_files.model)
    response = client.get(f"/v1/models/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created
