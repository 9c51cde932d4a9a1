"""The Adult demo audit through the `fairsqueeze audit` command, checked variant by variant."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from fairlearn.metrics import equalized_odds_difference

from tests.utils.adult import build_adult
from workers.report import load_schema
from workers.spec import DEFAULT_RECIPES

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SENSITIVE = ["sex", "race"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    build = build_adult(tmp_path_factory.mktemp("adult-build"))
    out = build / "report"
    completed = subprocess.run(
        [sys.executable, "-m", "service.cli", "audit", "--spec", str(build / "spec.yaml"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    return build, out, completed


@pytest.fixture(scope="module")
def report(demo) -> dict:
    _, out, completed = demo
    assert completed.returncode == 0, completed.stderr
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def evaluation(demo) -> pd.DataFrame:
    build, _, _ = demo
    return pd.read_csv(build / "adult-eval.csv")


def test_command_prints_table(demo):
    _, _, completed = demo
    assert completed.returncode == 0, completed.stderr
    assert "Fairness by sensitive column" in completed.stdout
    assert "prune-global-90" in completed.stdout


def test_report_follows_schema(report):
    jsonschema.validate(report, load_schema())


def test_base_accuracy_at_least_084(report):
    assert report["variants"][0]["metrics"]["overall"]["accuracy"] >= 0.84


def test_default_set_covers_every_method(report):
    methods = {step["method"] for variant in report["variants"][1:] for step in variant["steps"]}
    assert len(report["variants"]) - 1 == len(DEFAULT_RECIPES) >= 8
    assert methods == {"quantize_dynamic", "quantize_static", "fp16", "prune", "prune_structured", "low_rank"}


def test_every_variant_succeeds(report):
    failed = {variant["name"]: variant.get("error") for variant in report["variants"] if variant["status"] != "succeeded"}
    assert failed == {}


def test_variant_files_check_and_run(report, demo, evaluation):
    _, out, _ = demo
    features = evaluation[report["data"]["features"]].to_numpy(dtype=np.float32)
    for variant in report["variants"]:
        path = out / variant["artifact"]["path"]
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (logits,) = session.run(None, {"features": features[:5]})
        assert logits.shape == (5, 2)


def test_rates_match_onnx_runtime(report, demo, evaluation):
    _, out, _ = demo
    features = evaluation[report["data"]["features"]].to_numpy(dtype=np.float32)
    y_true = (evaluation["income"] == ">50K").to_numpy().astype(int)
    # Dynamic quantization scales activations per call, so predictions depend on the batches:
    # run the same batches as the audit did.
    batch_size = report["job"]["evaluation"]["batch_size"]
    for variant in report["variants"]:
        session = ort.InferenceSession(str(out / variant["artifact"]["path"]), providers=["CPUExecutionProvider"])
        batches = [
            session.run(None, {"features": features[start : start + batch_size]})[0]
            for start in range(0, len(features), batch_size)
        ]
        predictions = np.argmax(np.concatenate(batches), axis=1)
        for attribute in SENSITIVE:
            groups = evaluation[attribute].to_numpy()
            reported = variant["metrics"]["by_group"][attribute]
            for group in np.unique(groups):
                mask = groups == group
                positives = y_true[mask] == 1
                expected = {
                    "tpr": np.mean(predictions[mask][positives] == 1),
                    "fpr": np.mean(predictions[mask][~positives] == 1),
                    "selection_rate": np.mean(predictions[mask] == 1),
                }
                for name, value in expected.items():
                    assert reported[group][name] == pytest.approx(float(value), abs=1e-9), (variant["name"], group, name)
            gap = variant["metrics"]["gaps"][attribute]["equalized_odds_difference"]["value"]
            assert gap == pytest.approx(equalized_odds_difference(y_true, predictions, sensitive_features=groups), abs=1e-12)


def weight_sparsity(path: Path) -> float:
    model = onnx.load(str(path))
    weights = [onnx.numpy_helper.to_array(tensor) for tensor in model.graph.initializer if len(tensor.dims) == 2]
    total = sum(weight.size for weight in weights)
    return 1.0 - sum(int(np.count_nonzero(weight)) for weight in weights) / total


@pytest.mark.parametrize(("name", "sparsity"), [("prune-local-50", 0.5), ("prune-global-90", 0.9)])
def test_pruning_reaches_sparsity(report, demo, name, sparsity):
    _, out, _ = demo
    variant = next(variant for variant in report["variants"] if variant["name"] == name)
    assert weight_sparsity(out / variant["artifact"]["path"]) == pytest.approx(sparsity, abs=0.01)


def test_structured_pruning_shrinks_model(report):
    by_name = {variant["name"]: variant for variant in report["variants"]}
    assert by_name["prune-structured-50"]["artifact"]["parameters"] < by_name["base"]["artifact"]["parameters"]


def test_quantized_file_is_smaller(report):
    by_name = {variant["name"]: variant for variant in report["variants"]}
    assert by_name["int8-dynamic"]["artifact"]["bytes"] < by_name["base"]["artifact"]["bytes"] / 2
