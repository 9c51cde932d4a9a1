"""API keys: 401 when required, ownership of models, datasets and jobs, and `fairsqueeze keys`."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import CreatedKey, create_api_key
from service.cli import main
from service.db import upgrade_database
from service.settings import Settings, get_settings
from tests.service.client import upload, upload_ok
from tests.service.factories import job_spec


@pytest.fixture
def keyed_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", recovery_interval=0, max_upload_bytes=200_000, require_api_key=True)


@pytest.fixture
def keys(keyed_settings: Settings) -> dict[str, CreatedKey]:
    url = keyed_settings.resolved_database_url
    upgrade_database(url)
    return {name: create_api_key(url, name=name) for name in ("alice", "bob")}


@pytest.fixture
def api(keyed_settings: Settings, keys) -> Iterator[TestClient]:
    with TestClient(create_app(keyed_settings)) as test_client:
        yield test_client


def bearer(created: CreatedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {created.key}"}


def upload_as(api: TestClient, created: CreatedKey, route: str, path: Path) -> dict:
    with path.open("rb") as handle:
        response = api.post(route, files={"file": (path.name, handle)}, headers=bearer(created))
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture
def alice_job(api, keys, tiny_files) -> dict:
    """A queued job of alice's key, with its model and tables."""
    alice = keys["alice"]
    ids = {
        "model": upload_as(api, alice, "/v1/models", tiny_files.model)["id"],
        "evaluation": upload_as(api, alice, "/v1/datasets", tiny_files.evaluation)["id"],
        "training": upload_as(api, alice, "/v1/datasets", tiny_files.training)["id"],
    }
    spec = job_spec(ids["model"], ids["evaluation"], ids["training"])
    response = api.post("/v1/audits", json=spec, headers=bearer(alice))
    assert response.status_code == 202, response.text
    return {**ids, "audit": response.json()["id"], "spec": spec}


def test_missing_key_rejected(api):
    response = api.get("/v1/audits")

    assert response.status_code == 401
    assert response.json()["detail"].startswith("missing API key")
    assert "fairsqueeze keys create" in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_unknown_key_rejected(api, keys):
    forged = keys["alice"].key[:-4] + "AAAA"
    response = api.get("/v1/audits", headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401
    assert response.json()["detail"].startswith("invalid API key")


def test_malformed_authorization_rejected(api):
    response = api.get("/v1/audits", headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert response.status_code == 401
    assert "Bearer <key>" in response.json()["detail"]


def test_revoked_key_rejected(api, keys, keyed_settings):
    from service import store
    from service.db import session_scope
    from service.tables import utcnow

    with session_scope(keyed_settings.resolved_database_url) as session:
        store.revoke_api_key(session, key_id=keys["bob"].record.id, now=utcnow())
    response = api.get("/v1/audits", headers=bearer(keys["bob"]))

    assert response.status_code == 401
    assert "was revoked" in response.json()["detail"]


def test_x_api_key_header_accepted(api, keys):
    response = api.get("/v1/audits", headers={"X-API-Key": keys["alice"].key})

    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_health_routes_stay_open(api):
    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").status_code == 200
    assert api.get("/metrics").status_code == 200


def test_other_key_gets_404_for_job(api, keys, alice_job):
    audit = alice_job["audit"]
    routes = [
        ("GET", f"/v1/audits/{audit}"),
        ("GET", f"/v1/audits/{audit}/report"),
        ("GET", f"/v1/audits/{audit}/report.html"),
        ("GET", f"/v1/audits/{audit}/deliveries"),
        ("GET", f"/v1/audits/{audit}/variants/base/model.onnx"),
        ("POST", f"/v1/audits/{audit}/cancel"),
        ("DELETE", f"/v1/audits/{audit}"),
    ]
    for method, route in routes:
        response = api.request(method, route, headers=bearer(keys["bob"]))
        assert response.status_code == 404, (method, route, response.text)
        assert response.json()["detail"] == f"audit '{audit}' not found"
    owner_view = api.get(f"/v1/audits/{audit}", headers=bearer(keys["alice"]))

    assert owner_view.status_code == 200
    assert owner_view.json()["status"] == "queued"


def test_other_key_gets_404_for_uploads(api, keys, alice_job):
    model = api.get(f"/v1/models/{alice_job['model']}", headers=bearer(keys["bob"]))
    dataset = api.get(f"/v1/datasets/{alice_job['evaluation']}", headers=bearer(keys["bob"]))

    assert model.status_code == 404
    assert dataset.status_code == 404
    assert api.get(f"/v1/models/{alice_job['model']}", headers=bearer(keys["alice"])).status_code == 200


def test_lists_show_only_own_records(api, keys, alice_job):
    for route in ("/v1/models", "/v1/datasets", "/v1/audits"):
        assert api.get(route, headers=bearer(keys["bob"])).json() == {"data": [], "count": 0}
    assert api.get("/v1/audits", headers=bearer(keys["alice"])).json()["count"] == 1
    assert api.get("/v1/datasets", headers=bearer(keys["alice"])).json()["count"] == 2


def test_job_cannot_name_other_keys_model(api, keys, alice_job):
    response = api.post("/v1/audits", json=alice_job["spec"], headers=bearer(keys["bob"]))

    assert response.status_code == 422
    assert f"no model with id {alice_job['model']!r}" in response.json()["detail"]


def test_same_bytes_two_keys_two_records(api, keys, tiny_files, keyed_settings):
    first = upload_as(api, keys["alice"], "/v1/models", tiny_files.model)
    again = upload_as(api, keys["alice"], "/v1/models", tiny_files.model)
    other = upload_as(api, keys["bob"], "/v1/models", tiny_files.model)

    assert again["id"] == first["id"]
    assert other["id"] != first["id"]
    assert other["sha256"] == first["sha256"]
    assert len(list((keyed_settings.resolved_data_dir / "models").iterdir())) == 2


def test_idempotency_key_scoped_per_key(api, keys, tiny_files):
    created = {}
    for name in ("alice", "bob"):
        key = keys[name]
        spec = job_spec(
            upload_as(api, key, "/v1/models", tiny_files.model)["id"],
            upload_as(api, key, "/v1/datasets", tiny_files.evaluation)["id"],
        )
        response = api.post("/v1/audits", json=spec, headers={**bearer(key), "Idempotency-Key": "nightly-1"})
        assert response.status_code == 202, response.text
        created[name] = response.json()

    assert created["alice"]["id"] != created["bob"]["id"]


def test_keys_optional_without_setting(settings, tiny_files):
    upgrade_database(settings.resolved_database_url)
    key = create_api_key(settings.resolved_database_url, name="ci")
    with TestClient(create_app(settings)) as api:
        anonymous = upload_ok(api, "/v1/models", tiny_files.model)
        keyed = upload_as(api, key, "/v1/models", tiny_files.model)
        anonymous_view = api.get(f"/v1/models/{keyed['id']}")
        keyed_view = api.get(f"/v1/models/{anonymous['id']}", headers=bearer(key))

    assert keyed["id"] != anonymous["id"]
    assert anonymous_view.status_code == 404
    assert keyed_view.status_code == 404


def test_invalid_key_rejected_when_optional(client):
    response = client.get("/v1/models", headers={"X-API-Key": "fsq_000000000000_nope"})

    assert response.status_code == 401


def test_key_stored_as_hash(keys, keyed_settings):
    alice = keys["alice"]
    database = keyed_settings.resolved_data_dir / "fairsqueeze.db"
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT prefix, key_sha256 FROM api_keys WHERE id = ?", (alice.record.id,)).fetchall()
    # Recent writes may still be in the write-ahead log beside the database file.
    dump = b"".join(path.read_bytes() for path in database.parent.glob("fairsqueeze.db*"))

    assert rows == [(alice.record.prefix, hashlib.sha256(alice.key.encode()).hexdigest())]
    assert alice.key.encode() not in dump
    assert alice.key.startswith(f"fsq_{alice.record.prefix}_")


def run_keys(capsys, data_dir: Path, *arguments: str) -> tuple[int, str, str]:
    try:
        code = main(["keys", *arguments, "--data-dir", str(data_dir)])
    finally:
        get_settings.cache_clear()
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_keys_command_creates_lists_revokes(tmp_path, capsys, monkeypatch):
    # The command exports --data-dir; monkeypatch restores the variable afterwards.
    monkeypatch.setenv("FAIRSQUEEZE_DATA_DIR", str(tmp_path / "data"))
    code, out, err = run_keys(capsys, tmp_path / "data", "create", "--name", "ci-main")
    key_id = re.search(r"^id:\s+(\w+)$", out, re.MULTILINE).group(1)
    key = re.search(r"^key:\s+(\S+)$", out, re.MULTILINE).group(1)
    secret = re.search(r"^webhook secret:\s+(\S+)$", out, re.MULTILINE).group(1)

    assert code == 0
    assert "not shown again" in err
    assert key.startswith("fsq_")
    assert secret.startswith("whsec_")

    code, listing, _ = run_keys(capsys, tmp_path / "data", "list")
    assert code == 0
    assert key_id in listing
    assert "ci-main" in listing
    assert key not in listing

    code, revoked, _ = run_keys(capsys, tmp_path / "data", "revoke", key_id)
    _, listing, _ = run_keys(capsys, tmp_path / "data", "list")
    row = next(line for line in listing.splitlines() if line.startswith(key_id))
    assert code == 0
    assert "revoked key" in revoked
    assert row.split()[-1] != "-"


def test_keys_revoke_unknown_id_exits_two(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAIRSQUEEZE_DATA_DIR", str(tmp_path / "data"))
    code, _, err = run_keys(capsys, tmp_path / "data", "revoke", "nope")

    assert code == 2
    assert "no key with id 'nope'" in err


def test_revoked_key_rejected_after_command(tmp_path, capsys, monkeypatch, tiny_files):
    monkeypatch.setenv("FAIRSQUEEZE_DATA_DIR", str(tmp_path / "data"))
    _, out, _ = run_keys(capsys, tmp_path / "data", "create", "--name", "temporary")
    key_id = re.search(r"^id:\s+(\w+)$", out, re.MULTILINE).group(1)
    key = re.search(r"^key:\s+(\S+)$", out, re.MULTILINE).group(1)
    settings = Settings(data_dir=tmp_path / "data", recovery_interval=0, require_api_key=True)
    with TestClient(create_app(settings)) as api:
        before = api.get("/v1/models", headers={"X-API-Key": key}).status_code
        run_keys(capsys, tmp_path / "data", "revoke", key_id)
        after = api.get("/v1/models", headers={"X-API-Key": key}).status_code

    assert before == 200
    assert after == 401
