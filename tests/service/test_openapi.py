"""openapi/openapi.json: current with the app, and a schemathesis run against a live server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import main
from service.openapi import DEFAULT_PATH, render_openapi
from tests.service.processes import ManagedProcess, free_port, python_command, service_env, wait_until_ready

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
]


def test_committed_document_is_current():
    committed = DEFAULT_PATH.read_text(encoding="utf-8")

    assert committed == render_openapi(), "openapi/openapi.json is stale; run `fairsqueeze openapi` and commit it"


def test_openapi_check_flags_stale_file(tmp_path: Path, capsys):
    path = tmp_path / "openapi.json"
    path.write_text("{}\n")

    assert main(["openapi", "--check", "--out", str(path)]) == 1
    assert main(["openapi", "--out", str(path)]) == 0
    assert main(["openapi", "--check", "--out", str(path)]) == 0


def test_document_has_request_and_response_examples():
    document = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    create = document["paths"]["/v1/audits"]["post"]
    schemas = document["components"]["schemas"]

    assert create["requestBody"]["content"]["application/json"]["examples"]
    assert schemas["AuditPublic"]["examples"]
    assert schemas["ModelPublic"]["examples"]
    assert schemas["DatasetPublic"]["examples"]
    assert schemas["ErrorPublic"]["examples"]


def test_uploads_documented_as_multipart():
    document = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))

    for path in ("/v1/models", "/v1/datasets"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert body["schema"]["required"] == ["file"]
        assert set(document["paths"][path]["post"]["responses"]) >= {"413", "415", "422"}


@pytest.mark.slow
def test_schemathesis_finds_no_errors(tmp_path: Path):
    port = free_port()
    env = service_env({"FAIRSQUEEZE_DATA_DIR": str(tmp_path / "data"), "FAIRSQUEEZE_MAX_UPLOAD_BYTES": "100000"})
    command = python_command("service.cli", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port))
    server = ManagedProcess("api", command, env=env, log_dir=tmp_path)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", server)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                str(DEFAULT_PATH),
                "--url",
                f"http://127.0.0.1:{port}",
                "--checks",
                ",".join(CHECKS),
                "--max-examples",
                "30",
                "--seed",
                "0",
                "--workers",
                "2",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        server.stop()

    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:] + server.log_tail()
