"""HTTP helpers shared by the service tests: uploads, polling, and report comparison."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

FINAL_STATUSES = {"succeeded", "failed", "cancelled"}
# Keys whose values depend on when and where a run happened, not on what it computed.
RUN_DETAIL_KEYS = {"timings", "seconds", "created_at", "duration_seconds", "environment", "latency"}


def upload(client: Any, route: str, path: Path, **params: Any) -> Any:
    with path.open("rb") as handle:
        return client.post(route, files={"file": (path.name, handle, "application/octet-stream")}, params=params)


def upload_ok(client: Any, route: str, path: Path) -> dict[str, Any]:
    response = upload(client, route, path)
    if response.status_code not in (200, 201):
        raise AssertionError(f"upload of {path.name} to {route} failed: {response.status_code} {response.text}")
    return response.json()


def wait_for_audit(client: httpx.Client, audit_id: str, *, timeout: float, statuses: set[str] = FINAL_STATUSES) -> dict:
    """Poll GET /v1/audits/{id} until its status is in `statuses`; return the last body."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v1/audits/{audit_id}").json()
        if body.get("status") in statuses:
            return body
        time.sleep(0.25)
    raise AssertionError(f"audit {audit_id} did not reach {sorted(statuses)} in {timeout} s; last state: {body}")


def without_run_details(value: Any) -> Any:
    """Drop timings and other per-run values from a report, so two runs of one spec compare equal."""
    if isinstance(value, dict):
        return {key: without_run_details(item) for key, item in value.items() if key not in RUN_DETAIL_KEYS}
    if isinstance(value, list):
        return [without_run_details(item) for item in value]
    return value
