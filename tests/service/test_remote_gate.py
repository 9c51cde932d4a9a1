"""`fairsqueeze gate --server` against a running `fairsqueeze serve` with the Adult job, and key ownership."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lxml import etree

from tests.service.processes import (
    REPO_ROOT,
    ManagedProcess,
    free_port,
    python_command,
    service_env,
    wait_until_ready,
)
from tests.utils.adult import build_adult

pytestmark = pytest.mark.slow

RECIPES = "int8-dynamic,prune-global-90"
PASSING_POLICY = """\
decision: bound
rules:
  - {metric: equalized_odds_difference, attribute: sex, max: 0.15}
  - {metric: accuracy, min: 0.84, max_drop: 0.01}
"""
FAILING_POLICY = """\
rules:
  - {metric: equalized_odds_difference, attribute: sex, max: 0.05}
"""
JUNIT_SCHEMA = REPO_ROOT / "tests" / "workers" / "schemas" / "junit.xsd"


@dataclass
class Server:
    base_url: str
    keys: dict[str, str]
    process: ManagedProcess


def create_key(data_dir: Path, name: str) -> str:
    completed = subprocess.run(
        python_command("service.cli", "keys", "create", "--name", name),
        cwd=REPO_ROOT,
        env=service_env({"FAIRSQUEEZE_DATA_DIR": str(data_dir)}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return re.search(r"^key:\s+(\S+)$", completed.stdout, re.MULTILINE).group(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("remote-gate")
    data_dir = folder / "data"
    keys = {name: create_key(data_dir, name) for name in ("alice", "bob")}
    port = free_port()
    env = service_env({"FAIRSQUEEZE_DATA_DIR": str(data_dir), "FAIRSQUEEZE_REQUIRE_API_KEY": "true"})
    command = python_command("service.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--concurrency", "1")
    process = ManagedProcess("serve", command, env=env, log_dir=folder)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process)
        yield Server(f"http://127.0.0.1:{port}", keys, process)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def adult(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = build_adult(tmp_path_factory.mktemp("adult"))
    (build / "pass.yaml").write_text(PASSING_POLICY)
    (build / "fail.yaml").write_text(FAILING_POLICY)
    return build


def remote_gate(cwd: Path, server_url: str, key: str | None, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = service_env({"FAIRSQUEEZE_API_KEY": key} if key else {})
    return subprocess.run(
        python_command("service.cli", "gate", "--server", server_url, *arguments),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def audit_id_of(completed: subprocess.CompletedProcess[str]) -> str:
    return re.search(r"audit (\w{32}) queued on", completed.stderr).group(1)


@pytest.fixture(scope="module")
def passing(server: Server, adult: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = adult / "remote-pass"
    completed = remote_gate(
        adult, server.base_url, server.keys["alice"],
        "--spec", "spec.yaml", "--policy", "pass.yaml", "--recipes", RECIPES, "--resamples", "200", "--out", str(out),
    )
    return completed, out


@pytest.fixture(scope="module")
def failing(server: Server, adult: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = adult / "remote-fail"
    completed = remote_gate(
        adult, server.base_url, server.keys["alice"],
        "--spec", "spec.yaml", "--policy", "fail.yaml", "--recipes", "int8-dynamic", "--resamples", "200",
        "--quiet", "--out", str(out),
    )
    return completed, out


def test_passing_policy_exits_zero(passing):
    completed, out = passing

    assert completed.returncode == 0, completed.stderr + completed.stdout
    assert "gate PASSED: int8-dynamic is the smallest model that passes every rule" in completed.stdout
    assert "Gate verdicts" in completed.stdout
    for name in ("report.json", "report.html", "gate.json", "junit.xml", "base.onnx", "int8-dynamic.onnx"):
        assert (out / name).is_file(), name


def test_remote_junit_validates(passing):
    _, out = passing
    schema = etree.XMLSchema(etree.parse(str(JUNIT_SCHEMA)))
    document = etree.parse(str(out / "junit.xml"))

    assert schema.validate(document), str(schema.error_log)
    assert document.getroot().get("tests") == str(3 * 3)


def test_remote_report_has_gate(passing):
    _, out = passing
    report = json.loads((out / "report.json").read_text())

    assert report["gate"]["recommended"] == "int8-dynamic"
    assert json.loads((out / "gate.json").read_text()) == report["gate"]
    assert [variant["name"] for variant in report["variants"]] == ["base", "int8-dynamic", "prune-global-90"]


def test_equalized_odds_policy_exits_one(failing):
    completed, out = failing
    result = json.loads((out / "gate.json").read_text())["variants"][1]["results"][0]

    assert completed.returncode == 1, completed.stderr
    assert "gate FAILED: no model passes every rule" in completed.stdout
    assert "int8-dynamic equalized_odds_difference (sex) max 0.05:" in completed.stdout
    assert f"upper bound of the equalized_odds_difference {result['judged']:.4f} > max 0.05" in completed.stdout
    assert f"value {result['value']:.4f}" in completed.stdout


def test_other_key_gets_404(server, passing):
    audit_id = audit_id_of(passing[0])
    routes = [f"/v1/audits/{audit_id}", f"/v1/audits/{audit_id}/report", f"/v1/audits/{audit_id}/report.html"]
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        owner = client.get(routes[0], headers={"Authorization": f"Bearer {server.keys['alice']}"})
        others = [client.get(route, headers={"Authorization": f"Bearer {server.keys['bob']}"}) for route in routes]
        anonymous = client.get(routes[0])

    assert owner.status_code == 200
    assert [response.status_code for response in others] == [404, 404, 404]
    assert anonymous.status_code == 401


def test_report_html_served(server, passing):
    audit_id = audit_id_of(passing[0])
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        response = client.get(
            f"/v1/audits/{audit_id}/report.html", headers={"Authorization": f"Bearer {server.keys['alice']}"}
        )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "int8-dynamic" in response.text


def test_missing_key_exits_two(server, adult, tmp_path):
    completed = remote_gate(
        adult, server.base_url, None,
        "--spec", "spec.yaml", "--policy", "pass.yaml", "--recipes", "fp16", "--out", str(tmp_path / "out"),
    )

    assert completed.returncode == 2
    assert "rejected the request (401)" in completed.stderr
    assert "FAIRSQUEEZE_API_KEY" in completed.stderr


def test_timeout_exits_two_and_cancels(server, adult, tmp_path):
    completed = remote_gate(
        adult, server.base_url, server.keys["bob"],
        "--spec", "spec.yaml", "--policy", "pass.yaml", "--recipes", "fp16", "--timeout", "0.5", "--quiet",
        "--out", str(tmp_path / "out"),
    )
    audit_id = audit_id_of(completed)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        status = client.get(f"/v1/audits/{audit_id}", headers={"X-API-Key": server.keys["bob"]}).json()["status"]

    assert completed.returncode == 2
    assert "did not end within 0.5 s" in completed.stderr
    assert "the job was cancelled" in completed.stderr
    assert status == "cancelled"


def test_stopped_server_exits_two(adult, tmp_path):
    port = free_port()
    env = service_env({"FAIRSQUEEZE_DATA_DIR": str(tmp_path / "data")})
    command = python_command("service.cli", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port))
    stopped = ManagedProcess("stopped-api", command, env=env, log_dir=tmp_path)
    wait_until_ready(f"http://127.0.0.1:{port}", stopped)
    stopped.stop()

    completed = remote_gate(
        adult, f"http://127.0.0.1:{port}", "fsq_000000000000_unused",
        "--spec", "spec.yaml", "--policy", "pass.yaml", "--recipes", "fp16", "--out", str(tmp_path / "out"),
    )

    assert completed.returncode == 2
    assert f"no response from the fairsqueeze server at http://127.0.0.1:{port}" in completed.stderr
    assert "Check --server" in completed.stderr
    assert not (tmp_path / "out" / "junit.xml").exists()
