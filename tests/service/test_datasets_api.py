"""POST and GET /v1/datasets on the in-process app."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.service.client import upload, upload_ok
from tests.service.factories import make_table


def test_csv_upload_describes_table(client, tiny_files, settings):
    response = upload(client, "/v1/datasets", tiny_files.evaluation)
    body = response.json()

    assert response.status_code == 201
    assert body["format"] == "csv"
    assert body["rows"] == 400
    assert [column["name"] for column in body["columns"]] == ["f0", "f1", "f2", "f3", "sex", "label"]
    assert {column["name"]: column["dtype"] for column in body["columns"]}["label"] == "int64"
    stored = settings.resolved_data_dir / "datasets" / body["id"] / "eval.csv"
    assert stored.read_bytes() == tiny_files.evaluation.read_bytes()


def test_parquet_upload_describes_table(client, tmp_path: Path):
    path = tmp_path / "table.parquet"
    make_table(50, seed=3).to_parquet(path)
    body = upload_ok(client, "/v1/datasets", path)

    assert body["format"] == "parquet"
    assert body["rows"] == 50
    assert {column["name"]: column["dtype"] for column in body["columns"]}["f0"] == "float32"


def test_npz_upload_describes_arrays(client, tmp_path: Path):
    path = tmp_path / "tensors.npz"
    np.savez(path, x=np.zeros((12, 3, 2), dtype=np.float32), label=np.arange(12))
    body = upload_ok(client, "/v1/datasets", path)

    assert body["format"] == "npz"
    assert body["rows"] == 12
    assert {column["name"]: column["shape"] for column in body["columns"]}["x"] == [3, 2]


def test_delimiter_parameter_applies(client, tmp_path: Path):
    path = tmp_path / "semicolons.csv"
    make_table(20, seed=4).to_csv(path, sep=";", index=False)
    body = upload(client, "/v1/datasets", path, delimiter=";").json()

    assert body["delimiter"] == ";"
    assert len(body["columns"]) == 6


def test_unknown_extension_rejected(client, tmp_path: Path, settings):
    path = tmp_path / "table.xlsx"
    path.write_bytes(b"PK\x03\x04")
    response = upload(client, "/v1/datasets", path)

    assert response.status_code == 422
    assert response.json()["detail"].startswith("file: ")
    assert ".xlsx" in response.json()["detail"]
    assert list((settings.resolved_data_dir / "datasets").iterdir()) == []


def test_unreadable_parquet_rejected(client, tmp_path: Path, settings):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    response = upload(client, "/v1/datasets", path)

    assert response.status_code == 422
    assert "broken.parquet" in response.json()["detail"]
    assert list((settings.resolved_data_dir / "datasets").iterdir()) == []


def test_long_delimiter_rejected(client, tiny_files):
    response = upload(client, "/v1/datasets", tiny_files.evaluation, delimiter=";;")

    assert response.status_code == 422
    assert "delimiter" in response.json()["detail"]


def test_list_datasets_paginates(client, tiny_files):
    for _ in range(3):
        upload_ok(client, "/v1/datasets", tiny_files.evaluation)
    page = client.get("/v1/datasets", params={"limit": 2, "offset": 1}).json()

    assert page["count"] == 3
    assert len(page["data"]) == 2


def test_get_unknown_dataset(client):
    response = client.get("/v1/datasets/missing-id")

    assert response.status_code == 404
    assert "'missing-id'" in response.json()["detail"]

