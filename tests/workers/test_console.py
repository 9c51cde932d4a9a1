"""The `fairsqueeze audit` command: flags, exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.utils.models import export_mlp, make_table


def audit(*arguments: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "audit", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.fixture()
def files(tmp_path):
    export_mlp(tmp_path / "model.onnx", n_features=4, seed=0)
    make_table(300, seed=1).to_csv(tmp_path / "eval.csv", index=False)
    return tmp_path


def test_flags_without_spec(files):
    completed = audit(
        "--model", "model.onnx", "--data", "eval.csv", "--label", "label", "--sensitive", "group",
        "--recipes", "int8-dynamic,fp16", "--resamples", "100", "--out", "out", cwd=files,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads((files / "out" / "report.json").read_text())
    assert [variant["name"] for variant in report["variants"]] == ["base", "int8-dynamic", "fp16"]
    assert report["job"]["bootstrap"]["resamples"] == 100
    assert "Variants" in completed.stdout


def test_spec_paths_relative_to_spec(files, tmp_path_factory):
    spec = files / "job.yaml"
    spec.write_text(
        "model: model.onnx\n"
        "data: {evaluation: eval.csv, label: label, sensitive: [group]}\n"
        "recipes: [{name: half, steps: [{method: fp16}]}]\n"
        "bootstrap: {resamples: 50}\n"
    )
    elsewhere = tmp_path_factory.mktemp("cwd")
    completed = audit("--spec", str(spec), "--out", str(elsewhere / "out"), "--quiet", cwd=elsewhere)
    assert completed.returncode == 0, completed.stderr
    assert (elsewhere / "out" / "half.onnx").is_file()


def test_missing_column_exit_code(files):
    completed = audit(
        "--model", "model.onnx", "--data", "eval.csv", "--label", "label", "--sensitive", "gender",
        "--recipes", "fp16", "--out", "out", cwd=files,
    )
    assert completed.returncode == 2
    assert "sensitive column 'gender' not found" in completed.stderr
    assert "available: f0, f1, f2, f3, group, label" in completed.stderr
    assert not (files / "out" / "report.json").exists()


def test_invalid_spec_names_field(files):
    spec = files / "job.yaml"
    spec.write_text(
        "model: model.onnx\n"
        "data: {evaluation: eval.csv, label: label, sensitive: [group]}\n"
        "recipes: [{name: p, steps: [{method: prune, sparsity: 1.5}]}]\n"
    )
    completed = audit("--spec", str(spec), "--out", "out", cwd=files)
    assert completed.returncode == 2
    assert "recipes.0.steps.0" in completed.stderr
    assert "sparsity" in completed.stderr


def test_unknown_default_recipe(files):
    completed = audit(
        "--model", "model.onnx", "--data", "eval.csv", "--label", "label", "--sensitive", "group",
        "--recipes", "int4", "--out", "out", cwd=files,
    )
    assert completed.returncode == 2
    assert "unknown recipe int4" in completed.stderr


def test_not_onnx_model(files):
    (files / "model.onnx").write_bytes(b"not a model")
    completed = audit(
        "--model", "model.onnx", "--data", "eval.csv", "--label", "label", "--sensitive", "group",
        "--out", "out", cwd=files,
    )
    assert completed.returncode == 2
    assert "as an ONNX model" in completed.stderr


def test_spec_file_missing(files):
    completed = audit("--spec", "absent.yaml", "--out", "out", cwd=files)
    assert completed.returncode == 2
    assert "job spec file not found: absent.yaml" in completed.stderr


def test_earlier_results_protected(files):
    arguments = ("--model", "model.onnx", "--data", "eval.csv", "--label", "label", "--sensitive", "group",
                 "--recipes", "fp16", "--resamples", "20", "--out", "out")
    assert audit(*arguments, cwd=files).returncode == 0
    second = audit(*arguments, cwd=files)
    assert second.returncode == 2
    assert "already contains the results of an audit" in second.stderr


def test_overwrite_removes_stale_variants(files):
    common = ("--model", "model.onnx", "--data", "eval.csv", "--label", "label", "--sensitive", "group",
              "--resamples", "20", "--out", "out")
    assert audit(*common, "--recipes", "fp16", cwd=files).returncode == 0
    completed = audit(*common, "--recipes", "int8-dynamic", "--overwrite", cwd=files)
    assert completed.returncode == 0, completed.stderr
    assert not (files / "out" / "fp16.onnx").exists()
    assert (files / "out" / "int8-dynamic.onnx").is_file()


def test_report_file_permissions(files):
    completed = audit(
        "--model", "model.onnx", "--data", "eval.csv", "--label", "label", "--sensitive", "group",
        "--recipes", "fp16", "--resamples", "20", "--out", "out", cwd=files,
    )
    assert completed.returncode == 0, completed.stderr
    mode = (files / "out" / "report.json").stat().st_mode & 0o777
    assert mode & 0o044 == 0o044


def test_warnings_reach_terminal(files):
    table = make_table(300, seed=1)
    table.loc[:4, "group"] = "tiny"
    table.to_csv(files / "eval.csv", index=False)
    completed = audit(
        "--model", "model.onnx", "--data", "eval.csv", "--label", "label", "--sensitive", "group",
        "--recipes", "fp16", "--resamples", "20", "--out", "out", cwd=files,
    )
    assert completed.returncode == 0, completed.stderr
    assert "warnings" in completed.stdout
    assert "tiny" in completed.stdout


def test_no_output_folder_on_error(files):
    completed = audit(
        "--model", "model.onnx", "--data", "eval.csv", "--label", "missing", "--sensitive", "group",
        "--out", "never", cwd=files,
    )
    assert completed.returncode == 2
    assert not (files / "never").exists()
