"""The `fairsqueeze` command line and the gateway's import footprint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import build_parser, main
from service.settings import get_settings
from tests.service.factories import job_spec
from tests.service.processes import REPO_ROOT

NO_TORCH_SCRIPT = """
import sys
from pathlib import Path
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings
import service.cli

settings = Settings(data_dir=Path(sys.argv[1]), recovery_interval=0)
with TestClient(create_app(settings)) as client:
    def upload(route, path):
        with open(path, "rb") as handle:
            return client.post(route, files={"file": (Path(path).name, handle)}).json()["id"]
    model = upload("/v1/models", sys.argv[2])
    table = upload("/v1/datasets", sys.argv[3])
    spec = {"model": model, "data": {"evaluation": table, "label": "label", "positive_label": 1,
            "sensitive": ["sex"], "features": ["f0", "f1", "f2", "f3"]},
            "recipes": [{"name": "fp16", "steps": [{"method": "fp16"}]}]}
    status = client.post("/v1/audits", json=spec).status_code
print(status, "torch" in sys.modules)
"""


def test_subcommands_listed():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices

    assert {"audit", "serve", "worker", "openapi"} <= set(commands)


def test_serve_defaults_to_loopback():
    args = build_parser().parse_args(["serve"])

    assert args.host == "127.0.0.1"
    assert args.port == 8000
    assert args.no_worker is False


def test_audit_subcommand_runs_engine(tiny_files, tmp_path: Path):
    spec_path = tmp_path / "spec.yaml"
    spec = job_spec(str(tiny_files.model), str(tiny_files.evaluation), str(tiny_files.training), resamples=20)
    import yaml

    spec_path.write_text(yaml.safe_dump(spec))
    code = main(["audit", "--spec", str(spec_path), "--out", str(tmp_path / "out"), "--quiet"])

    assert code == 0
    assert (tmp_path / "out" / "report.json").is_file()
    assert (tmp_path / "out" / "fp16.onnx").is_file()


def test_unknown_subcommand_exits():
    with pytest.raises(SystemExit):
        main(["launch"])


def test_gateway_never_imports_torch(tiny_files, tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH_SCRIPT, str(tmp_path / "data"), str(tiny_files.model), str(tiny_files.evaluation)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["202", "False"]


def test_worker_rejects_unknown_queue(tmp_path: Path, capsys, monkeypatch):
    # The command exports --data-dir; monkeypatch restores the variable afterwards.
    monkeypatch.setenv("FAIRSQUEEZE_DATA_DIR", str(tmp_path / "data"))
    try:
        code = main(["worker", "--queues", "cpu,tpu", "--data-dir", str(tmp_path / "data")])
    finally:
        get_settings.cache_clear()

    assert code == 2
    assert "tpu" in capsys.readouterr().err
