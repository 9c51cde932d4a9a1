"""Webhook deliveries against a real receiver on 127.0.0.1, a real store and the real engine, without a worker."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service import store
from service.app import create_app
from service.auth import CreatedKey, create_api_key
from service.db import session_scope, upgrade_database
from service.settings import Settings
from service.tables import utcnow
from service.webhooks import deliver, resend_stalled_deliveries, retry_delay, sign, verify
from tests.service.factories import job_spec
from tests.service.processes import free_port
from tests.service.receivers import webhook_receiver
from workers.celery_app import WEBHOOK_QUEUE, create_celery
from workers.tasks import AuditJob

SERVER_SECRET = "server-secret-for-tests"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        recovery_interval=0,
        webhook_secret=SERVER_SECRET,
        webhook_retry_delay=0.05,
        webhook_retry_max_delay=0.2,
        webhook_max_attempts=4,
        webhook_timeout=5,
    )


@pytest.fixture
def key(settings: Settings) -> CreatedKey:
    upgrade_database(settings.resolved_database_url)
    return create_api_key(settings.resolved_database_url, name="hooks")


def upload(api: TestClient, route: str, path: Path, headers: dict[str, str]) -> str:
    with path.open("rb") as handle:
        response = api.post(route, files={"file": (path.name, handle)}, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


def submit(
    settings: Settings, tiny_files, callback_url: str, *, key: CreatedKey | None = None, **extra
) -> tuple[int, dict]:
    """Upload the tiny files and submit a job with `callback_url`; return the status code and the body."""
    headers = {"Authorization": f"Bearer {key.key}"} if key else {}
    with TestClient(create_app(settings)) as api:
        spec = job_spec(
            upload(api, "/v1/models", tiny_files.model, headers),
            upload(api, "/v1/datasets", tiny_files.evaluation, headers),
            resamples=20,
        )
        spec["recipes"] = spec["recipes"][:1]
        spec.update(callback_url=callback_url, **extra)
        response = api.post("/v1/audits", json=spec, headers=headers)
    return response.status_code, response.json()


def run_job(settings: Settings, audit_id: str) -> dict:
    return AuditJob(audit_id, settings=settings, worker="test@host", celery=create_celery(settings)).run()


def deliveries(settings: Settings, audit_id: str, key: CreatedKey | None = None) -> list[dict]:
    headers = {"Authorization": f"Bearer {key.key}"} if key else {}
    with TestClient(create_app(settings)) as api:
        response = api.get(f"/v1/audits/{audit_id}/deliveries", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def deliver_until_done(settings: Settings, delivery_id: str, *, limit: int = 10) -> list[str]:
    """Run the delivery's POSTs as the task would, waiting out each backoff; return the outcomes."""
    outcomes = []
    for _ in range(limit):
        outcome = deliver(delivery_id, settings=settings)
        outcomes.append(outcome.outcome)
        if outcome.retry_in is None:
            return outcomes
        time.sleep(outcome.retry_in + 0.02)
    return outcomes


def finished_job(settings: Settings, tiny_files, callback_url: str, key: CreatedKey | None = None, **extra) -> str:
    status, body = submit(settings, tiny_files, callback_url, key=key, **extra)
    assert status == 202, body
    assert run_job(settings, body["id"])["outcome"] == "succeeded"
    return body["id"]


def test_signature_verifies_only_same_bytes():
    body = b'{"event": "audit.succeeded"}'
    signature = sign("secret", body)

    assert signature.startswith("sha256=")
    assert len(signature) == len("sha256=") + 64
    assert verify("secret", body, signature) is True
    assert verify("other", body, signature) is False
    assert verify("secret", body + b" ", signature) is False


def test_finished_job_stages_one_delivery(settings, tiny_files, key):
    audit_id = finished_job(settings, tiny_files, "http://127.0.0.1:9/hook", key=key)
    staged = deliveries(settings, audit_id, key)
    with sqlite3.connect(settings.resolved_data_dir / "broker.db") as connection:
        rows = connection.execute(
            "SELECT payload FROM kombu_message JOIN kombu_queue ON kombu_queue.id = kombu_message.queue_id "
            "WHERE kombu_queue.name = ?",
            (WEBHOOK_QUEUE,),
        ).fetchall()
    arguments, _, _ = json.loads(base64.b64decode(json.loads(rows[0][0])["body"]))

    assert [item["event"] for item in staged] == ["audit.succeeded"]
    assert staged[0]["status"] == "pending"
    assert staged[0]["attempts"] == []
    assert len(rows) == 1
    assert arguments == [staged[0]["id"]]


def test_delivery_retried_after_two_failures(settings, tiny_files, key):
    with webhook_receiver({"/hook": [500, 500]}) as receiver:
        audit_id = finished_job(settings, tiny_files, receiver.url("/hook"), key=key)
        delivery_id = deliveries(settings, audit_id, key)[0]["id"]
        outcomes = deliver_until_done(settings, delivery_id)
        again = deliver(delivery_id, settings=settings)
        posts = receiver.posts_to("/hook")
    listed = deliveries(settings, audit_id, key)[0]
    payload = json.loads(posts[-1].body)

    assert outcomes == ["retrying", "retrying", "succeeded"]
    assert again.outcome == "skipped"
    assert [post.answered for post in posts] == [500, 500, 200]
    for post in posts:
        assert verify(key.record.webhook_secret, post.body, post.headers["x-fairsqueeze-signature"])
        assert post.headers["x-fairsqueeze-delivery"] == delivery_id
        assert post.headers["x-fairsqueeze-event"] == "audit.succeeded"
    assert not verify(SERVER_SECRET, posts[-1].body, posts[-1].headers["x-fairsqueeze-signature"])
    assert listed["status"] == "succeeded"
    assert [attempt["status_code"] for attempt in listed["attempts"]] == [500, 500, 200]
    assert listed["attempts"][0]["error"].startswith("the receiver responded with 500")
    assert listed["attempts"][2]["error"] is None
    assert payload["audit"]["id"] == audit_id
    assert payload["audit"]["status"] == "succeeded"
    assert payload["audit"]["report_url"] == f"/v1/audits/{audit_id}/report"
    assert payload["audit"]["gate"] is None


def test_client_error_not_retried(settings, tiny_files, key):
    with webhook_receiver({"/gone": [404]}) as receiver:
        audit_id = finished_job(settings, tiny_files, receiver.url("/gone"), key=key)
        outcomes = deliver_until_done(settings, deliveries(settings, audit_id, key)[0]["id"])
        posts = receiver.posts_to("/gone")
    listed = deliveries(settings, audit_id, key)[0]

    assert outcomes == ["failed"]
    assert len(posts) == 1
    assert listed["status"] == "failed"
    assert listed["next_attempt_at"] is None


def test_unreachable_receiver_given_up(settings, tiny_files, key):
    audit_id = finished_job(settings, tiny_files, f"http://127.0.0.1:{free_port()}/hook", key=key)
    outcomes = deliver_until_done(settings, deliveries(settings, audit_id, key)[0]["id"])
    listed = deliveries(settings, audit_id, key)[0]

    assert outcomes == ["retrying"] * (settings.webhook_max_attempts - 1) + ["failed"]
    assert listed["status"] == "failed"
    assert len(listed["attempts"]) == settings.webhook_max_attempts
    assert {attempt["status_code"] for attempt in listed["attempts"]} == {None}
    assert "ConnectError" in listed["attempts"][0]["error"]


def test_server_secret_signs_keyless_job(settings, tiny_files):
    with webhook_receiver() as receiver:
        audit_id = finished_job(settings, tiny_files, receiver.url("/anonymous"))
        deliver_until_done(settings, deliveries(settings, audit_id)[0]["id"])
        post = receiver.posts_to("/anonymous")[0]

    assert verify(SERVER_SECRET, post.body, post.headers["x-fairsqueeze-signature"])


def test_keyless_callback_needs_server_secret(settings, tiny_files):
    without_secret = settings.model_copy(update={"webhook_secret": None})
    status, body = submit(without_secret, tiny_files, "http://127.0.0.1:9/hook")

    assert status == 422
    assert body["detail"].startswith("callback_url:")
    assert "FAIRSQUEEZE_WEBHOOK_SECRET" in body["detail"]


def test_callback_url_must_be_http(settings, tiny_files, key):
    status, body = submit(settings, tiny_files, "file:///etc/passwd", key=key)

    assert status == 422
    assert "callback_url" in body["detail"]
    assert "http or https" in body["detail"]


def test_cancel_sends_cancelled_event(settings, tiny_files, key):
    with webhook_receiver() as receiver:
        status, body = submit(settings, tiny_files, receiver.url("/cancelled"), key=key)
        with TestClient(create_app(settings)) as api:
            cancelled = api.post(f"/v1/audits/{body['id']}/cancel", headers={"Authorization": f"Bearer {key.key}"})
        staged = deliveries(settings, body["id"], key)
        deliver_until_done(settings, staged[0]["id"])
        payload = json.loads(receiver.posts_to("/cancelled")[0].body)

    assert cancelled.status_code == 200
    assert [item["event"] for item in staged] == ["audit.cancelled"]
    assert payload["event"] == "audit.cancelled"
    assert payload["audit"]["status"] == "cancelled"
    assert payload["audit"]["report_url"] is None


def test_failed_job_sends_failed_event(settings, tiny_files, key):
    status, body = submit(settings, tiny_files, "http://127.0.0.1:9/hook", key=key)
    for path in (settings.resolved_data_dir / "datasets").rglob("*.csv"):
        path.unlink()
    outcome = run_job(settings, body["id"])
    staged = deliveries(settings, body["id"], key)

    assert outcome["outcome"] == "failed"
    assert [item["event"] for item in staged] == ["audit.failed"]


def test_payload_carries_gate_verdict(settings, tiny_files, key):
    gate = {"decision": "point", "rules": [{"metric": "accuracy", "min": 0.05}]}
    with webhook_receiver() as receiver:
        audit_id = finished_job(settings, tiny_files, receiver.url("/gate"), key=key, gate=gate)
        deliver_until_done(settings, deliveries(settings, audit_id, key)[0]["id"])
        payload = json.loads(receiver.posts_to("/gate")[0].body)
    report = json.loads((settings.resolved_data_dir / "audits" / audit_id / "report.json").read_text())

    assert payload["audit"]["gate"]["passed"] is True
    assert payload["audit"]["gate"]["recommended"] == report["gate"]["recommended"]
    assert payload["audit"]["gate"]["summary"] == report["gate"]["summary"]
    assert payload["audit"]["variants_succeeded"] == 2


def test_stalled_delivery_sent_again(settings, tiny_files, key):
    audit_id = finished_job(settings, tiny_files, "http://127.0.0.1:9/hook", key=key)
    celery = create_celery(settings)
    later = utcnow() + timedelta(hours=1)

    resent = resend_stalled_deliveries(settings=settings, celery=celery, now=later)
    repeated = resend_stalled_deliveries(settings=settings, celery=celery, now=later)

    assert resent == [deliveries(settings, audit_id, key)[0]["id"]]
    assert repeated == []


def test_locked_delivery_not_sent_twice(settings, tiny_files, key):
    audit_id = finished_job(settings, tiny_files, "http://127.0.0.1:9/hook", key=key)
    delivery_id = deliveries(settings, audit_id, key)[0]["id"]
    now = utcnow()
    with session_scope(settings.resolved_database_url) as session:
        locked = store.lock_delivery(session, delivery_id=delivery_id, now=now, until=now + timedelta(minutes=1))

    assert locked is True
    assert deliver(delivery_id, settings=settings).outcome == "skipped"


def test_retry_delay_doubles_to_cap(settings):
    delays = [retry_delay(settings, attempts) for attempts in (1, 2, 3, 4, 5)]

    assert delays == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert retry_delay(settings, 1, retry_after=0.15) == 0.15
    assert retry_delay(settings, 1, retry_after=60) == settings.webhook_retry_max_delay


def test_short_server_secret_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        Settings(webhook_secret="tiny-secret")

    assert "at least 16" in str(caught.value)
    assert "tiny-secret" not in str(caught.value)
