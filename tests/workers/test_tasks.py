"""The audit task against a real store, real files and the real engine, without a broker."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service import store
from service.app import create_app
from service.db import session_scope
from service.settings import Settings, get_settings
from service.storage import ArtifactStorage
from service.tables import utcnow
from tests.service.client import upload_ok
from tests.service.factories import export_tiny_mlp, job_spec, write_tables
from workers.tasks import AuditJob, RetryableJobError, run_audit_job

RECIPES = [
    {"name": "int8-dynamic", "steps": [{"method": "quantize_dynamic"}]},
    {"name": "fp16", "steps": [{"method": "fp16"}]},
    {"name": "prune-50", "steps": [{"method": "prune", "scope": "global", "sparsity": 0.5}]},
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("task-files")
    evaluation, training = write_tables(folder, rows=300, seed=5)
    return {"model": export_tiny_mlp(folder / "mlp.onnx"), "evaluation": evaluation, "training": training}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", recovery_interval=0, heartbeat_interval=0.5, stale_after=2.0)


@pytest.fixture
def audit_id(settings: Settings, files: dict[str, Path]) -> str:
    """Submit a job through the API, so the store contains what a worker would find."""
    with TestClient(create_app(settings)) as client:
        spec = job_spec(
            upload_ok(client, "/v1/models", files["model"])["id"],
            upload_ok(client, "/v1/datasets", files["evaluation"])["id"],
            upload_ok(client, "/v1/datasets", files["training"])["id"],
            recipes=RECIPES,
            resamples=20,
        )
        response = client.post("/v1/audits", json=spec)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def read_audit(settings: Settings, audit_id: str):
    with session_scope(settings.resolved_database_url) as session:
        return store.get_audit(session, audit_id=audit_id, owner=store.ANY_OWNER)


def run_job(settings: Settings, audit_id: str, **kwargs) -> dict:
    return AuditJob(audit_id, settings=settings, worker="test@host", **kwargs).run()


def claim(settings: Settings, audit_id: str) -> store.Claim:
    now = utcnow()
    with session_scope(settings.resolved_database_url) as session:
        return store.claim_audit(
            session,
            audit_id=audit_id,
            worker="other@host",
            device="cpu",
            now=now,
            stale_before=now - timedelta(seconds=settings.resolved_stale_after),
            max_attempts=settings.max_attempts,
        )


def make_stale(settings: Settings, audit_id: str) -> None:
    with session_scope(settings.resolved_database_url) as session:
        audit = store.get_audit(session, audit_id=audit_id, owner=store.ANY_OWNER)
        audit.heartbeat_at = utcnow() - timedelta(minutes=5)


def test_job_runs_to_success(settings, audit_id):
    outcome = run_job(settings, audit_id)
    audit = read_audit(settings, audit_id)
    folder = ArtifactStorage(settings.resolved_data_dir).audit_dir(audit_id)
    report = json.loads((folder / "report.json").read_text())

    assert outcome["outcome"] == "succeeded"
    assert audit.status == "succeeded"
    assert audit.attempts == 1
    assert audit.finished_at >= audit.started_at
    assert [variant.status for variant in audit.variants] == ["succeeded"] * 4
    assert [variant["name"] for variant in report["variants"]] == ["base", "int8-dynamic", "fp16", "prune-50"]
    assert sorted(path.name for path in folder.glob("*.onnx")) == [
        "base.onnx",
        "fp16.onnx",
        "int8-dynamic.onnx",
        "prune-50.onnx",
    ]


def test_duplicate_delivery_skipped(settings, audit_id):
    first = claim(settings, audit_id)
    outcome = run_job(settings, audit_id)
    audit = read_audit(settings, audit_id)

    assert first.attempt == 1
    assert outcome["outcome"] == "skipped"
    assert audit.status == "running"
    assert audit.attempts == 1
    assert audit.worker == "other@host"


def test_redelivery_resumes_finished_variants(settings, audit_id):
    from workers.pipeline import run_audit

    storage = ArtifactStorage(settings.resolved_data_dir)
    interrupted = AuditJob(audit_id, settings=settings, worker="lost@host")
    interrupted.attempt = claim(settings, audit_id).attempt
    spec = interrupted._load_spec()

    def stop_after_int8(event: dict) -> None:
        interrupted._on_progress(event)
        if event.get("event") == "variant_finished" and event.get("variant") == "int8-dynamic":
            raise KeyboardInterrupt("worker lost")

    with pytest.raises(KeyboardInterrupt):
        run_audit(spec, out_dir=storage.audit_dir(audit_id), base_dir=storage.root, progress=stop_after_int8)
    int8_file = storage.variant_path(audit_id, "int8-dynamic")
    int8_written = int8_file.stat().st_mtime_ns
    before = {variant.name: variant for variant in read_audit(settings, audit_id).variants}
    make_stale(settings, audit_id)

    outcome = run_job(settings, audit_id)
    audit = read_audit(settings, audit_id)
    report = json.loads(storage.report_path(audit_id).read_text())
    names = [variant["name"] for variant in report["variants"]]

    assert before["int8-dynamic"].status == "succeeded"
    assert before["fp16"].status == "pending"
    assert outcome["outcome"] == "succeeded"
    assert audit.attempts == 2
    assert names == ["base", "int8-dynamic", "fp16", "prune-50"]
    assert [variant.name for variant in audit.variants] == names
    assert {variant.status for variant in audit.variants} == {"succeeded"}
    assert {variant.name: variant.finished_at for variant in audit.variants}["int8-dynamic"] == before[
        "int8-dynamic"
    ].finished_at
    assert int8_file.stat().st_mtime_ns == int8_written


def test_retry_continues_own_attempt(settings, audit_id):
    first = claim(settings, audit_id)
    outcome = run_job(settings, audit_id, previous_attempt=first.attempt)

    assert outcome["outcome"] == "succeeded"
    assert read_audit(settings, audit_id).attempts == 1


def test_cancelled_job_not_run(settings, audit_id):
    with session_scope(settings.resolved_database_url) as session:
        store.cancel_audit(session, audit_id=audit_id, now=utcnow())
    outcome = run_job(settings, audit_id)

    assert outcome["outcome"] == "skipped"
    assert read_audit(settings, audit_id).status == "cancelled"
    assert not ArtifactStorage(settings.resolved_data_dir).report_path(audit_id).exists()


class CancelAfterBase(AuditJob):
    def _on_progress(self, event: dict) -> None:
        if event.get("event") == "variant_started" and event.get("variant") == "int8-dynamic":
            with session_scope(self.url) as session:
                store.cancel_audit(session, audit_id=self.audit_id, now=utcnow())
        super()._on_progress(event)


def test_cancel_stops_running_job(settings, audit_id):
    outcome = CancelAfterBase(audit_id, settings=settings, worker="test@host").run()
    audit = read_audit(settings, audit_id)

    assert outcome["outcome"] == "aborted"
    assert audit.status == "cancelled"
    assert {variant.name: variant.status for variant in audit.variants}["fp16"] == "pending"


def test_deleted_job_skipped(settings, audit_id):
    with session_scope(settings.resolved_database_url) as session:
        store.delete_audit(session, audit_id=audit_id)
    outcome = run_job(settings, audit_id)

    assert outcome == {"audit_id": audit_id, "outcome": "skipped", "status": None}


def test_missing_table_fails_without_retry(settings, audit_id):
    for path in (settings.resolved_data_dir / "datasets").rglob("*.csv"):
        path.unlink()
    outcome = run_job(settings, audit_id)
    audit = read_audit(settings, audit_id)

    assert outcome["outcome"] == "failed"
    assert audit.status == "failed"
    assert ".csv" in audit.error
    assert audit.attempts == 1


def test_exhausted_attempts_fail_job(settings, audit_id):
    with session_scope(settings.resolved_database_url) as session:
        audit = store.get_audit(session, audit_id=audit_id, owner=store.ANY_OWNER)
        audit.status = "running"
        audit.attempts = settings.max_attempts
        audit.heartbeat_at = utcnow() - timedelta(minutes=5)
    outcome = run_job(settings, audit_id)
    audit = read_audit(settings, audit_id)

    assert outcome["outcome"] == "skipped"
    assert audit.status == "failed"
    assert f"interrupted {settings.max_attempts} times" in audit.error


def test_unreachable_store_is_retryable(settings):
    unreachable = settings.model_copy(update={"database_url": "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2"})

    with pytest.raises(RetryableJobError):
        run_job(unreachable, "any-id")


def test_celery_task_runs_job(settings, audit_id, monkeypatch):
    monkeypatch.setenv("FAIRSQUEEZE_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        result = run_audit_job.apply(args=[audit_id])
    finally:
        get_settings.cache_clear()

    assert result.successful()
    assert result.result["outcome"] == "succeeded"
    assert read_audit(settings, audit_id).status == "succeeded"
