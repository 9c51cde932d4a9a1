"""`fairsqueeze serve` with its embedded worker, over HTTP, with no Redis and no PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
import signal
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.service.flows import (
    assert_each_variant_once,
    audit_matches_cli,
    kill_process_group,
    lost_worker_job_completes_once,
    submit_many,
    upload_inputs,
    wait_for_all,
)
from tests.service.processes import ManagedProcess, free_port, python_command, service_env, wait_for, wait_until_ready

pytestmark = pytest.mark.slow


@dataclass
class EmbeddedServer:
    base_url: str
    data_dir: Path
    process: ManagedProcess

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=60)


def child_pids(pid: int) -> list[int]:
    """Return the direct children of `pid`, read from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


@pytest.fixture
def embedded(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EmbeddedServer]:
    concurrency = getattr(request, "param", 1)
    port = free_port()
    data_dir = tmp_path / "data"
    env = service_env(
        {
            "FAIRSQUEEZE_DATA_DIR": str(data_dir),
            "FAIRSQUEEZE_HEARTBEAT_INTERVAL": "1",
            "FAIRSQUEEZE_STALE_AFTER": "4",
            "FAIRSQUEEZE_RECOVERY_INTERVAL": "1",
        }
    )
    command = python_command(
        "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--concurrency", str(concurrency)
    )
    process = ManagedProcess("serve", command, env=env, log_dir=tmp_path)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process)
        yield EmbeddedServer(f"http://127.0.0.1:{port}", data_dir, process)
    finally:
        process.stop()


def test_embedded_audit_matches_cli(embedded, tiny_files, tmp_path):
    with embedded.client() as client:
        audit = audit_matches_cli(client, tiny_files, tmp_path)
    log = embedded.process.log_tail(1_000_000)

    assert f"[job {audit['id']}] job queued on cpu" in log
    assert f"[job {audit['id']}] job claimed by" in log
    assert f"[job {audit['id']}] job succeeded" in log


def test_embedded_worker_killed_and_replaced(embedded, tmp_path):
    def worker_pid() -> int | None:
        children = child_pids(embedded.process.pid)
        return children[0] if children else None

    first_worker = wait_for(worker_pid, timeout=30, description="the embedded worker to start")

    with embedded.client() as client:
        audit = lost_worker_job_completes_once(client, tmp_path, lambda: kill_process_group(first_worker))
        assert_each_variant_once(client, audit, embedded.data_dir)

    assert audit["attempts"] == 2
    assert worker_pid() not in (None, first_worker)


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "(python" in Path(f"/proc/{pid}/stat").read_text()


def test_embedded_worker_exits_with_serve(embedded):
    def worker_pid() -> int | None:
        children = child_pids(embedded.process.pid)
        return children[0] if children else None

    worker = wait_for(worker_pid, timeout=30, description="the embedded worker to start")
    embedded.process.process.send_signal(signal.SIGKILL)
    embedded.process.process.wait(timeout=10)

    wait_for(lambda: not process_exists(worker), timeout=60, description=f"worker {worker} to exit after serve")


@pytest.mark.parametrize("embedded", [2], indirect=True)
def test_hundred_concurrent_jobs_complete(embedded, tiny_files):
    with embedded.client() as client:
        ids = upload_inputs(client, tiny_files.model, tiny_files.evaluation, tiny_files.training)
        accepted = submit_many(embedded.client, ids, 100)
        jobs = wait_for_all(client, accepted, timeout=300)

    assert len(set(accepted)) == 100
    assert sorted(job["id"] for job in jobs) == sorted(accepted)
    assert {job["status"] for job in jobs} == {"succeeded"}
    assert {job["attempts"] for job in jobs} == {1}
    assert all(job["progress"]["succeeded"] == 2 for job in jobs)
