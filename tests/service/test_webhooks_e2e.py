"""Webhooks through `fairsqueeze serve` and its embedded worker, to a receiver on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.webhooks import verify
from tests.service.client import wait_for_audit
from tests.service.factories import job_spec
from tests.service.processes import (
    REPO_ROOT,
    ManagedProcess,
    free_port,
    python_command,
    service_env,
    wait_for,
    wait_until_ready,
)
from tests.service.receivers import webhook_receiver

pytestmark = pytest.mark.slow

SERVER_SECRET = "server-secret-for-e2e"


@dataclass
class HookServer:
    base_url: str
    key: str
    key_secret: str
    process: ManagedProcess


@pytest.fixture
def hook_server(tmp_path: Path) -> Iterator[HookServer]:
    data_dir = tmp_path / "data"
    env = service_env(
        {
            "FAIRSQUEEZE_DATA_DIR": str(data_dir),
            "FAIRSQUEEZE_WEBHOOK_SECRET": SERVER_SECRET,
            "FAIRSQUEEZE_WEBHOOK_RETRY_DELAY": "0.5",
        }
    )
    created = subprocess.run(
        python_command("service.cli", "keys", "create", "--name", "hooks"),
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    key = re.search(r"^key:\s+(\S+)$", created.stdout, re.MULTILINE).group(1)
    secret = re.search(r"^webhook secret:\s+(\S+)$", created.stdout, re.MULTILINE).group(1)
    port = free_port()
    command = python_command("service.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--concurrency", "1")
    process = ManagedProcess("serve", command, env=env, log_dir=tmp_path)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process)
        yield HookServer(f"http://127.0.0.1:{port}", key, secret, process)
    finally:
        process.stop()


def submit_with_callback(client: httpx.Client, tiny_files, callback_url: str) -> str:
    def upload(route: str, path: Path) -> str:
        with path.open("rb") as handle:
            response = client.post(route, files={"file": (path.name, handle)})
        assert response.status_code in (200, 201), response.text
        return response.json()["id"]

    spec = job_spec(upload("/v1/models", tiny_files.model), upload("/v1/datasets", tiny_files.evaluation), resamples=20)
    spec["callback_url"] = callback_url
    response = client.post("/v1/audits", json=spec)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def settled_delivery(client: httpx.Client, audit_id: str) -> dict:
    def settled() -> dict | None:
        data = client.get(f"/v1/audits/{audit_id}/deliveries").json()["data"]
        return data[0] if data and data[0]["status"] != "pending" else None

    return wait_for(settled, timeout=60, description=f"the webhook delivery of audit {audit_id}")


def test_each_job_gets_one_signed_delivery(hook_server, tiny_files):
    keyed = httpx.Client(base_url=hook_server.base_url, timeout=60, headers={"X-API-Key": hook_server.key})
    keyless = httpx.Client(base_url=hook_server.base_url, timeout=60)
    with webhook_receiver({"/keyed": [500, 500]}) as receiver, keyed, keyless:
        keyed_job = submit_with_callback(keyed, tiny_files, receiver.url("/keyed"))
        keyless_job = submit_with_callback(keyless, tiny_files, receiver.url("/keyless"))
        audits = [wait_for_audit(keyed, keyed_job, timeout=120), wait_for_audit(keyless, keyless_job, timeout=120)]
        keyed_delivery = settled_delivery(keyed, keyed_job)
        keyless_delivery = settled_delivery(keyless, keyless_job)
        keyed_posts = receiver.posts_to("/keyed")
        keyless_posts = receiver.posts_to("/keyless")

    assert [audit["status"] for audit in audits] == ["succeeded", "succeeded"]
    assert [post.answered for post in keyed_posts] == [500, 500, 200]
    assert [post.answered for post in keyless_posts] == [200]
    for post in keyed_posts:
        assert verify(hook_server.key_secret, post.body, post.headers["x-fairsqueeze-signature"])
        assert json.loads(post.body)["audit"]["id"] == keyed_job
    assert verify(SERVER_SECRET, keyless_posts[0].body, keyless_posts[0].headers["x-fairsqueeze-signature"])
    assert json.loads(keyless_posts[0].body)["audit"]["id"] == keyless_job
    assert {post.headers["x-fairsqueeze-delivery"] for post in keyed_posts} == {keyed_delivery["id"]}
    assert keyed_delivery["status"] == "succeeded"
    assert [attempt["status_code"] for attempt in keyed_delivery["attempts"]] == [500, 500, 200]
    assert keyless_delivery["status"] == "succeeded"
    assert len(keyless_delivery["attempts"]) == 1
