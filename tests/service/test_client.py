"""The Python client (`service.client`) against the in-process app and a job run by the real engine."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import create_api_key
from service.client import (
    ApiResponseError,
    FairsqueezeClient,
    ServerUnreachable,
    WaitTimeout,
    download_results,
    upload_spec_inputs,
)
from service.db import upgrade_database
from service.schemas.audits import AuditPublic
from service.settings import Settings
from tests.service.factories import job_spec
from tests.service.processes import REPO_ROOT, free_port
from workers.celery_app import create_celery
from workers.spec import parse_spec
from workers.tasks import AuditJob


@pytest.fixture
def fsq(client: TestClient) -> Iterator[FairsqueezeClient]:
    with FairsqueezeClient("http://testserver", http=client) as api_client:
        yield api_client


@pytest.fixture
def queued(fsq: FairsqueezeClient, tiny_files) -> AuditPublic:
    model = fsq.upload_model(tiny_files.model)
    evaluation = fsq.upload_dataset(tiny_files.evaluation)
    return fsq.submit_audit(job_spec(model.id, evaluation.id, resamples=20))


def test_upload_and_submit_typed(fsq, queued, tiny_files):
    model = fsq.upload_model(tiny_files.model)
    listed = fsq.list_audits()

    assert model.bytes == tiny_files.model.stat().st_size
    assert queued.status == "queued"
    assert queued.model_id == model.id
    assert [variant.name for variant in queued.variants] == ["base", "int8-dynamic", "fp16"]
    assert listed.count == 1
    assert listed.data[0].id == queued.id


def test_unknown_audit_raises_404(fsq):
    with pytest.raises(ApiResponseError) as caught:
        fsq.get_audit("nope")

    assert caught.value.status_code == 404
    assert caught.value.detail == "audit 'nope' not found"


def test_report_before_success_rejected(fsq, queued):
    with pytest.raises(ApiResponseError) as report:
        fsq.get_report(queued.id)
    with pytest.raises(ApiResponseError) as html:
        fsq.get_report_html(queued.id)

    assert report.value.status_code == 409
    assert html.value.status_code == 404
    assert "status is queued" in html.value.detail


def test_finished_job_results_downloaded(fsq, queued, settings, tmp_path):
    AuditJob(queued.id, settings=settings, worker="test@host", celery=create_celery(settings)).run()
    finished = fsq.wait_for_audit(queued.id, timeout=10, poll_interval=0.1)
    html = fsq.get_report_html(queued.id)
    report = download_results(fsq, queued.id, tmp_path / "out")
    files = sorted(path.name for path in (tmp_path / "out").iterdir())

    assert finished.status == "succeeded"
    assert html.lstrip().lower().startswith("<!doctype html")
    assert [variant["name"] for variant in report["variants"]] == ["base", "int8-dynamic", "fp16"]
    assert files == ["base.onnx", "fp16.onnx", "int8-dynamic.onnx", "report.json"]
    onnx.checker.check_model(onnx.load(str(tmp_path / "out" / "fp16.onnx")))
    assert fsq.list_deliveries(queued.id).count == 0


def test_cancel_and_delete(fsq, queued):
    cancelled = fsq.cancel_audit(queued.id)
    fsq.delete_audit(queued.id)

    assert cancelled.status == "cancelled"
    with pytest.raises(ApiResponseError) as caught:
        fsq.get_audit(queued.id)
    assert caught.value.status_code == 404


def test_wait_times_out_on_queued_job(fsq, queued):
    updates = []
    with pytest.raises(WaitTimeout) as caught:
        fsq.wait_for_audit(queued.id, timeout=0.3, poll_interval=0.1, on_update=updates.append)

    assert caught.value.audit.status == "queued"
    assert "did not end within 0.3 s" in str(caught.value)
    assert len(updates) >= 2


def test_stopped_server_unreachable():
    with FairsqueezeClient(f"http://127.0.0.1:{free_port()}", timeout=5) as stopped:
        with pytest.raises(ServerUnreachable) as caught:
            stopped.list_audits()

    assert "no response from the fairsqueeze server" in str(caught.value)


def test_api_key_sent_as_bearer(tmp_path, tiny_files):
    settings = Settings(data_dir=tmp_path / "data", recovery_interval=0, require_api_key=True)
    upgrade_database(settings.resolved_database_url)
    key = create_api_key(settings.resolved_database_url, name="client")
    with TestClient(create_app(settings)) as app_client:
        with FairsqueezeClient("http://testserver", api_key=key.key, http=app_client) as keyed:
            model = keyed.upload_model(tiny_files.model)
        with FairsqueezeClient("http://testserver", http=app_client) as anonymous:
            with pytest.raises(ApiResponseError) as caught:
                anonymous.get_audit("any")

    assert len(model.id) == 32
    assert caught.value.status_code == 401


def test_spec_inputs_uploaded_from_spec_folder(fsq, tiny_files, tmp_path):
    spec = parse_spec(job_spec(tiny_files.model.name, tiny_files.evaluation.name, tiny_files.training.name))
    remote = upload_spec_inputs(fsq, spec, base_dir=tiny_files.model.parent)
    submitted = fsq.submit_audit(remote)

    assert submitted.model_id == remote.model
    assert submitted.evaluation_dataset_id == remote.data.evaluation
    assert submitted.training_dataset_id == remote.data.training
    assert remote.model != spec.model


def test_client_imports_no_torch():
    script = "import sys, service.client, workers.gate_remote; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
