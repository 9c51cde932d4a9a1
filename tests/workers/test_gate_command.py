"""`fairsqueeze gate` on the Adult job: exit codes, the verdict table, and the files it writes."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from lxml import etree

from tests.utils.adult import build_adult
from workers.gate_console import add_gate_arguments, gate_spec_from_arguments
from workers.report import load_schema

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RECIPES = "int8-dynamic,prune-global-90,low-rank-50"
PASSING_POLICY = """\
decision: bound
rules:
  - {metric: equalized_odds_difference, attribute: sex, max: 0.15}
  - {metric: accuracy, min: 0.84, max_drop: 0.01}
  - {metric: equalized_odds_difference, attribute: sex, max_increase: 0.03}
  - {metric: accuracy, attribute: sex, max_drop: 0.03}
"""
FAILING_POLICY = """\
rules:
  - {metric: equalized_odds_difference, attribute: sex, max: 0.05}
"""


def gate(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "gate", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def adult(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = build_adult(tmp_path_factory.mktemp("adult"))
    (build / "pass.yaml").write_text(PASSING_POLICY)
    (build / "fail.yaml").write_text(FAILING_POLICY)
    return build


@pytest.fixture(scope="module")
def passing(adult: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = adult / "gate-pass"
    completed = gate(
        "--spec", "spec.yaml", "--policy", "pass.yaml", "--recipes", RECIPES, "--resamples", "300", "--out", str(out),
        cwd=adult,
    )
    return completed, out


@pytest.fixture(scope="module")
def failing(adult: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = adult / "gate-fail"
    completed = gate(
        "--spec", "spec.yaml", "--policy", "fail.yaml", "--recipes", "int8-dynamic", "--resamples", "300",
        "--out", str(out), cwd=adult,
    )
    return completed, out


def test_passing_policy_exits_zero(passing):
    completed, _ = passing

    assert completed.returncode == 0, completed.stderr
    assert "gate PASSED: int8-dynamic is the smallest model that passes every rule" in completed.stdout
    assert "Gate verdicts" in completed.stdout


def test_passing_run_writes_every_file(passing):
    _, out = passing

    for name in ("report.json", "report.html", "gate.json", "junit.xml", "base.onnx", "int8-dynamic.onnx"):
        assert (out / name).is_file(), name


def test_report_with_gate_matches_schema(passing):
    _, out = passing
    report = json.loads((out / "report.json").read_text())

    jsonschema.validate(report, load_schema())

    assert report["gate"]["recommended"] == "int8-dynamic"
    assert json.loads((out / "gate.json").read_text()) == report["gate"]


def test_failing_variants_printed_with_reasons(passing):
    completed, out = passing
    gate_section = json.loads((out / "gate.json").read_text())
    pruned = next(verdict for verdict in gate_section["variants"] if verdict["name"] == "prune-global-90")

    assert pruned["passed"] is False
    assert "prune-global-90 accuracy max_drop 0.01: upper bound of the drop of accuracy" in completed.stdout


def test_junit_output_validates(passing):
    _, out = passing
    schema = etree.XMLSchema(etree.parse(str(Path(__file__).with_name("schemas") / "junit.xsd")))
    document = etree.parse(str(out / "junit.xml"))

    assert schema.validate(document), str(schema.error_log)
    assert document.getroot().get("tests") == str(4 * 5)


def test_equalized_odds_policy_exits_one(failing):
    completed, out = failing
    result = json.loads((out / "gate.json").read_text())["variants"][1]["results"][0]

    assert completed.returncode == 1, completed.stderr
    assert "gate FAILED: no model passes every rule" in completed.stdout
    assert "int8-dynamic equalized_odds_difference (sex) max 0.05:" in completed.stdout
    assert f"upper bound of the equalized_odds_difference {result['judged']:.4f} > max 0.05" in completed.stdout
    assert f"value {result['value']:.4f}" in completed.stdout
    assert "* recommended" not in completed.stdout


def test_spec_gate_used_without_policy(adult, tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(
        (adult / "spec.yaml").read_text() + "gate:\n  decision: point\n  rules: [{metric: accuracy, min: 0.8}]\n"
    )
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)

    merged, _ = gate_spec_from_arguments(parser.parse_args(["--spec", str(spec), "--out", "out"]))
    overridden, _ = gate_spec_from_arguments(
        parser.parse_args(["--spec", str(spec), "--out", "out", "--policy", str(adult / "fail.yaml")])
    )

    assert merged.gate.decision == "point"
    assert merged.gate.rules[0].min == 0.8
    assert overridden.gate.rules[0].metric == "equalized_odds_difference"
    assert overridden.gate.decision == "bound"


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
def test_mlflow_flag_logs_run(adult):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) is not installed")
    out = adult / "gate-mlflow"
    uri = f"sqlite:///{adult / 'mlflow.db'}"
    completed = gate(
        "--spec", "spec.yaml", "--policy", "pass.yaml", "--recipes", "fp16", "--resamples", "100", "--quiet",
        "--mlflow-uri", uri, "--out", str(out), cwd=adult,
    )
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("fairsqueeze").experiment_id])

    assert completed.returncode == 0, completed.stderr
    assert len(runs) == 1
    assert runs[0].data.tags["fairsqueeze.gate"] == "passed"
    assert "fp16/gate_passed" in runs[0].data.metrics


def test_point_decision_flag_overrides_policy(adult):
    out = adult / "gate-point"
    completed = gate(
        "--spec", "spec.yaml", "--policy", "fail.yaml", "--decision", "point", "--recipes", "fp16",
        "--resamples", "0", "--quiet", "--out", str(out), cwd=adult,
    )
    section = json.loads((out / "gate.json").read_text())

    assert completed.returncode == 1
    assert section["decision"] == "point"
    assert section["variants"][0]["results"][0]["basis"] == "point"


@pytest.mark.parametrize(
    ("arguments", "policy", "message"),
    [
        ((), "rules: [{metric: eod, attribute: sex, max: 0.1}]\n", "unknown metric 'eod'"),
        ((), "rules: [{metric: accuracy, attribute: gender, max_drop: 0.1}]\n", "unknown attribute 'gender'; known attributes: sex, race, sex&race"),
        ((), "rules: [{metric: accuracy, max_dorp: 0.1}]\n", "rules.0.max_dorp"),
        (("--model", "missing.onnx"), "rules: [{metric: accuracy, min: 0.8}]\n", "missing.onnx"),
    ],
)
def test_invalid_input_exits_two(adult, tmp_path, arguments, policy, message):
    (tmp_path / "policy.yaml").write_text(policy)

    completed = gate(
        "--spec", str(adult / "spec.yaml"), "--policy", str(tmp_path / "policy.yaml"), "--recipes", "fp16",
        "--out", str(tmp_path / "out"), *arguments, cwd=tmp_path,
    )

    assert completed.returncode == 2
    assert "error:" in completed.stderr
    assert message in completed.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_missing_policy_exits_two(adult, tmp_path):
    completed = gate("--spec", str(adult / "spec.yaml"), "--out", str(tmp_path / "out"), cwd=tmp_path)

    assert completed.returncode == 2
    assert "no gate policy: add a gate section to the job spec or pass --policy FILE" in completed.stderr


def test_missing_policy_file_exits_two(adult, tmp_path):
    completed = gate(
        "--spec", str(adult / "spec.yaml"), "--policy", "absent.yaml", "--out", str(tmp_path / "out"), cwd=tmp_path
    )

    assert completed.returncode == 2
    assert "gate policy file not found: absent.yaml" in completed.stderr
