"""Scenarios that the embedded and the Redis/PostgreSQL end-to-end tests both run over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import httpx
import onnx

from tests.service.client import upload_ok, wait_for_audit, without_run_details
from tests.service.factories import CHEAP_RECIPES, export_tiny_mlp, job_spec, write_tables

# Latency runs make every variant take a few seconds, long enough to kill a worker between two.
SLOW_RECIPES = [
    {"name": "int8-dynamic", "steps": [{"method": "quantize_dynamic"}]},
    {"name": "fp16", "steps": [{"method": "fp16"}]},
    {"name": "prune-50", "steps": [{"method": "prune", "scope": "global", "sparsity": 0.5}]},
    {"name": "int8-after-prune", "steps": [{"method": "prune", "sparsity": 0.3}, {"method": "quantize_dynamic"}]},
]


def upload_inputs(client: httpx.Client, model: Path, evaluation: Path, training: Path) -> dict[str, str]:
    return {
        "model": upload_ok(client, "/v1/models", model)["id"],
        "evaluation": upload_ok(client, "/v1/datasets", evaluation)["id"],
        "training": upload_ok(client, "/v1/datasets", training)["id"],
    }


def audit_matches_cli(client: httpx.Client, tiny_files: Any, work_dir: Path) -> dict[str, Any]:
    """Upload, audit and download over HTTP, check the report equals `run_audit` on the same spec,
    and return the finished job."""
    from workers.pipeline import run_audit
    from workers.spec import parse_spec

    ids = upload_inputs(client, tiny_files.model, tiny_files.evaluation, tiny_files.training)
    spec = job_spec(ids["model"], ids["evaluation"], ids["training"], recipes=CHEAP_RECIPES, resamples=100)
    response = client.post("/v1/audits", json=spec)
    assert response.status_code == 202, response.text
    audit = wait_for_audit(client, response.json()["id"], timeout=120)
    assert audit["status"] == "succeeded", audit

    report = client.get(f"/v1/audits/{audit['id']}/report")
    variant = client.get(f"/v1/audits/{audit['id']}/variants/int8-dynamic/model.onnx")
    variant_path = work_dir / "downloaded-int8.onnx"
    variant_path.write_bytes(variant.content)
    onnx.checker.check_model(onnx.load(str(variant_path)))
    assert report.status_code == 200
    assert variant.status_code == 200
    assert [item["status"] for item in audit["variants"]] == ["succeeded"] * 3

    # The CLI's run gets the same files at the same paths relative to its base folder.
    base = work_dir / "cli-base"
    mirror = {
        f"models/{ids['model']}/model.onnx": tiny_files.model,
        f"datasets/{ids['evaluation']}/{tiny_files.evaluation.name}": tiny_files.evaluation,
        f"datasets/{ids['training']}/{tiny_files.training.name}": tiny_files.training,
    }
    for relative, source in mirror.items():
        (base / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, base / relative)
    cli_spec = job_spec(*mirror, recipes=CHEAP_RECIPES, resamples=100)
    expected = run_audit(parse_spec(cli_spec), out_dir=work_dir / "cli-out", base_dir=base)

    assert without_run_details(report.json()) == without_run_details(json.loads(json.dumps(expected)))
    assert variant.content == (work_dir / "cli-out" / "int8-dynamic.onnx").read_bytes()
    return audit


def slow_job_inputs(folder: Path) -> tuple[Path, Path, Path]:
    evaluation, training = write_tables(folder, rows=4000, seed=11)
    return export_tiny_mlp(folder / "wide.onnx", hidden=64), evaluation, training


def slow_job_spec(ids: dict[str, str]) -> dict[str, Any]:
    spec = job_spec(ids["model"], ids["evaluation"], ids["training"], recipes=SLOW_RECIPES, resamples=50)
    spec["evaluation"] = {"latency_runs": 8000, "batch_size": 4000}
    return spec


def lost_worker_job_completes_once(
    client: httpx.Client, folder: Path, kill_worker: Callable[[], None], *, timeout: float = 180
) -> dict[str, Any]:
    """Start a slow job, kill the worker running it after its first recipe, and wait for the job to end.

    Returns the final job body; the caller checks attempts and restarts workers as its mode needs.
    """
    ids = upload_inputs(client, *slow_job_inputs(folder))
    audit_id = client.post("/v1/audits", json=slow_job_spec(ids)).json()["id"]

    def first_recipe_done() -> dict[str, Any] | None:
        body = client.get(f"/v1/audits/{audit_id}").json()
        done = {item["name"] for item in body["variants"] if item["status"] == "succeeded"}
        return body if "int8-dynamic" in done else None

    deadline = time.monotonic() + 120
    body = None
    while body is None and time.monotonic() < deadline:
        body = first_recipe_done()
        time.sleep(0.1)
    assert body is not None, "the first recipe never finished"
    assert body["status"] == "running"
    assert body["progress"]["succeeded"] < body["progress"]["total"]
    kill_worker()

    return wait_for_audit(client, audit_id, timeout=timeout)


def assert_each_variant_once(client: httpx.Client, audit: dict[str, Any], data_dir: Path) -> None:
    report = client.get(f"/v1/audits/{audit['id']}/report").json()
    expected = ["base", *(recipe["name"] for recipe in SLOW_RECIPES)]
    onnx_files = sorted(path.stem for path in (data_dir / "audits" / audit["id"]).glob("*.onnx"))

    assert audit["status"] == "succeeded", audit
    assert [item["name"] for item in report["variants"]] == expected
    assert [item["name"] for item in audit["variants"]] == expected
    assert {item["status"] for item in audit["variants"]} == {"succeeded"}
    assert onnx_files == sorted(expected)


def submit_many(client_factory: Callable[[], httpx.Client], ids: dict[str, str], count: int) -> list[str]:
    """Submit `count` jobs from 16 threads at once; return the ids of the accepted ones."""
    spec = job_spec(ids["model"], ids["evaluation"], ids["training"], recipes=CHEAP_RECIPES[:1], resamples=100)

    def submit(index: int) -> httpx.Response:
        with client_factory() as client:
            return client.post("/v1/audits", json=spec, headers={"Idempotency-Key": f"bulk-{index}"})

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(submit, range(count)))
    statuses = [response.status_code for response in responses]
    assert statuses == [202] * count, [response.text for response in responses if response.status_code != 202][:3]
    return [response.json()["id"] for response in responses]


def wait_for_all(client: httpx.Client, audit_ids: list[str], *, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        page = client.get("/v1/audits", params={"limit": 500}).json()["data"]
        finished = [audit for audit in page if audit["status"] in ("succeeded", "failed", "cancelled")]
        if len(finished) >= len(audit_ids) or time.monotonic() > deadline:
            return page
        time.sleep(1)


def kill_process_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
