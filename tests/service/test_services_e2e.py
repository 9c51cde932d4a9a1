"""The API and Celery workers as separate processes on the PostgreSQL and Redis of this machine."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from service.webhooks import verify
from tests.service.client import wait_for_audit
from tests.service.factories import job_spec
from tests.service.flows import (
    assert_each_variant_once,
    audit_matches_cli,
    lost_worker_job_completes_once,
    upload_inputs,
)
from tests.service.receivers import webhook_receiver
from tests.service.processes import ManagedProcess, free_port, python_command, service_env, wait_for, wait_until_ready

pytestmark = [pytest.mark.services, pytest.mark.slow]

RESULT_EXPIRES = 600
WEBHOOK_SECRET = "services-e2e-secret"


@dataclass
class Stack:
    base_url: str
    data_dir: Path
    log_dir: Path
    env: dict[str, str]
    api: ManagedProcess
    workers: list[ManagedProcess] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=60)

    def start_worker(self) -> ManagedProcess:
        name = f"worker-{len(self.workers) + 1}"
        command = python_command("service.cli", "worker", "--concurrency", "1", "--hostname", f"{name}@%h")
        worker = ManagedProcess(name, command, env=self.env, log_dir=self.log_dir)
        self.workers.append(worker)

        def ready() -> bool:
            if not worker.alive():
                raise RuntimeError(f"{name} exited:\n{worker.log_tail()}")
            return f"{name}@" in worker.log_tail(20_000) and " ready." in worker.log_tail(20_000)

        wait_for(ready, timeout=60, description=f"{name} to connect to Redis")
        return worker


@pytest.fixture
def stack(tmp_path: Path, postgres_url: str, redis_settings: dict[str, str]) -> Iterator[Stack]:
    port = free_port()
    data_dir = tmp_path / "data"
    env = service_env(
        {
            "FAIRSQUEEZE_DATA_DIR": str(data_dir),
            "FAIRSQUEEZE_DATABASE_URL": postgres_url,
            **redis_settings,
            "FAIRSQUEEZE_HEARTBEAT_INTERVAL": "1",
            "FAIRSQUEEZE_STALE_AFTER": "4",
            # Lost jobs come back through Redis's visibility timeout here, not the gateway's scan.
            "FAIRSQUEEZE_RECOVERY_INTERVAL": "0",
            "FAIRSQUEEZE_SOFT_TIME_LIMIT": "25",
            "FAIRSQUEEZE_HARD_TIME_LIMIT": "30",
            "FAIRSQUEEZE_VISIBILITY_TIMEOUT": "32",
            "FAIRSQUEEZE_REDELIVERY_SCAN_INTERVAL": "2",
            "FAIRSQUEEZE_RESULT_EXPIRES": str(RESULT_EXPIRES),
            "FAIRSQUEEZE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "FAIRSQUEEZE_WEBHOOK_RETRY_DELAY": "0.5",
        }
    )
    command = python_command("service.cli", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port))
    api = ManagedProcess("api", command, env=env, log_dir=tmp_path)
    stack = Stack(f"http://127.0.0.1:{port}", data_dir, tmp_path, env, api)
    try:
        wait_until_ready(stack.base_url, api)
        stack.start_worker()
        yield stack
    finally:
        for process in [*stack.workers, api]:
            process.stop()


def test_separate_processes_match_cli(stack, tiny_files, tmp_path):
    with stack.client() as client:
        audit_matches_cli(client, tiny_files, tmp_path)
        readiness = client.get("/readyz").json()

    assert readiness == {"status": "ready", "database": "ok", "broker": "ok", "detail": None}


def test_task_results_expire_in_redis(stack, tiny_files, tmp_path):
    import redis

    with stack.client() as client:
        audit_matches_cli(client, tiny_files, tmp_path)
    prefix = stack.env["FAIRSQUEEZE_BROKER_KEY_PREFIX"]
    connection = redis.Redis.from_url(stack.env["FAIRSQUEEZE_BROKER_URL"])
    keys = wait_for(
        lambda: list(connection.scan_iter(match=f"{prefix}*celery-task-meta-*")),
        timeout=10,
        description="the task result in Redis",
    )
    ttls = [connection.ttl(key) for key in keys]
    connection.close()

    assert len(keys) == 1
    assert 0 < ttls[0] <= RESULT_EXPIRES


def test_killed_worker_job_redelivered_once(stack, tmp_path):
    first = stack.workers[0]

    def kill_and_replace() -> None:
        first.kill_group()
        stack.start_worker()

    with stack.client() as client:
        audit = lost_worker_job_completes_once(client, tmp_path, kill_and_replace, timeout=120)
        assert_each_variant_once(client, audit, stack.data_dir)

    assert audit["attempts"] == 2
    assert audit["worker"].startswith("worker-2@")


def test_webhook_retried_through_redis(stack, tiny_files):
    with webhook_receiver({"/hook": [503]}) as receiver, stack.client() as client:
        ids = upload_inputs(client, tiny_files.model, tiny_files.evaluation, tiny_files.training)
        spec = job_spec(ids["model"], ids["evaluation"], resamples=20)
        spec["callback_url"] = receiver.url("/hook")
        audit_id = client.post("/v1/audits", json=spec).json()["id"]
        audit = wait_for_audit(client, audit_id, timeout=120)

        def settled() -> dict | None:
            data = client.get(f"/v1/audits/{audit_id}/deliveries").json()["data"]
            return data[0] if data and data[0]["status"] != "pending" else None

        delivery = wait_for(settled, timeout=60, description="the webhook delivery")
        posts = receiver.posts_to("/hook")

    assert audit["status"] == "succeeded"
    assert delivery["status"] == "succeeded"
    assert [attempt["status_code"] for attempt in delivery["attempts"]] == [503, 200]
    assert [post.answered for post in posts] == [503, 200]
    assert verify(WEBHOOK_SECRET, posts[-1].body, posts[-1].headers["x-fairsqueeze-signature"])
