"""The audit pipeline end to end on tiny models, checked against ONNX Runtime and fairlearn."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from fairlearn.metrics import equalized_odds_difference

from tests.utils.models import export_mlp, make_table
from workers.data import DataError
from workers.pipeline import run_audit
from workers.report import load_schema
from workers.spec import SpecError, parse_spec

FEATURES = ["f0", "f1", "f2", "f3"]
RECIPES = [
    {"name": "int8", "steps": [{"method": "quantize_dynamic"}]},
    {"name": "prune-60", "steps": [{"method": "prune", "scope": "global", "sparsity": 0.6}]},
    {"name": "static", "steps": [{"method": "quantize_static", "samples": 128}]},
]


@pytest.fixture()
def workspace(tmp_path):
    export_mlp(tmp_path / "model.onnx", n_features=4, hidden=16, seed=1)
    make_table(600, seed=2, groups=("a", "b", "c")).to_csv(tmp_path / "eval.csv", index=False)
    make_table(400, seed=3, groups=("a", "b", "c")).to_csv(tmp_path / "train.csv", index=False)
    return tmp_path


def job(**overrides):
    raw = {
        "model": "model.onnx",
        "data": {"evaluation": "eval.csv", "training": "train.csv", "label": "label", "sensitive": ["group"]},
        "recipes": RECIPES,
        "bootstrap": {"resamples": 200, "seed": 0},
        "evaluation": {"latency_runs": 2},
    }
    raw.update(overrides)
    return parse_spec(raw)


def independent_rates(y_true, y_pred, groups):
    rates = {}
    for group in np.unique(groups):
        mask = groups == group
        positives = y_true[mask] == 1
        negatives = ~positives
        rates[str(group)] = {
            "tpr": float(np.mean(y_pred[mask][positives] == 1)) if positives.any() else None,
            "fpr": float(np.mean(y_pred[mask][negatives] == 1)) if negatives.any() else None,
            "selection_rate": float(np.mean(y_pred[mask] == 1)),
        }
    return rates


def onnx_predictions(path, features):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: features.astype(np.float32)})
    return np.argmax(logits, axis=1)


def test_report_matches_schema(workspace):
    report = run_audit(job(), out_dir=workspace / "out", base_dir=workspace)
    jsonschema.validate(report, load_schema())
    on_disk = json.loads((workspace / "out" / "report.json").read_text())
    assert on_disk["variants"][0]["name"] == "base"
    assert [variant["name"] for variant in on_disk["variants"]] == ["base", "int8", "prune-60", "static"]


def test_rates_match_independent_run(workspace):
    report = run_audit(job(), out_dir=workspace / "out", base_dir=workspace)
    table = pd.read_csv(workspace / "eval.csv")
    features = table[FEATURES].to_numpy()
    y_true = table["label"].to_numpy()
    groups = table["group"].to_numpy()

    for variant in report["variants"]:
        assert variant["status"] == "succeeded", variant.get("error")
        predictions = onnx_predictions(workspace / "out" / variant["artifact"]["path"], features)
        expected = independent_rates(y_true, predictions, groups)
        by_group = variant["metrics"]["by_group"]["group"]
        for group, rates in expected.items():
            for name, value in rates.items():
                assert by_group[group][name] == pytest.approx(value, abs=1e-9), (variant["name"], group, name)

        fairlearn_gap = equalized_odds_difference(y_true, predictions, sensitive_features=groups)
        reported = variant["metrics"]["gaps"]["group"]["equalized_odds_difference"]["value"]
        assert reported == pytest.approx(fairlearn_gap, abs=1e-12), variant["name"]


def test_every_variant_file_checks(workspace):
    report = run_audit(job(), out_dir=workspace / "out", base_dir=workspace)
    for variant in report["variants"]:
        path = workspace / "out" / variant["artifact"]["path"]
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        assert variant["checks"]["runs"] is True


def test_pruning_sparsity_reported(workspace):
    report = run_audit(job(), out_dir=workspace / "out", base_dir=workspace)
    pruned = next(variant for variant in report["variants"] if variant["name"] == "prune-60")
    artifact = pruned["artifact"]
    model = onnx.load(str(workspace / "out" / artifact["path"]))
    # Biases are not pruned, so sparsity is measured over the weight matrices alone.
    biases = sum(int(np.prod(tensor.dims)) for tensor in model.graph.initializer if len(tensor.dims) == 1)
    zeros = artifact["parameters"] - artifact["nonzero_parameters"]
    assert zeros / (artifact["parameters"] - biases) == pytest.approx(0.6, abs=0.01)


def test_failed_recipe_keeps_others(workspace):
    recipes = [
        {"name": "no-gain", "steps": [{"method": "low_rank", "rank_ratio": 0.99}]},
        {"name": "fp16", "steps": [{"method": "fp16"}]},
    ]
    report = run_audit(job(recipes=recipes), out_dir=workspace / "out", base_dir=workspace)
    statuses = {variant["name"]: variant["status"] for variant in report["variants"]}
    assert statuses == {"base": "succeeded", "no-gain": "failed", "fp16": "succeeded"}
    failed = report["variants"][1]
    assert "low_rank" in failed["error"]
    assert not (workspace / "out" / "no-gain.onnx").exists()
    jsonschema.validate(report, load_schema())


def test_progress_events_in_order(workspace):
    events = []
    run_audit(job(), out_dir=workspace / "out", base_dir=workspace, progress=events.append)
    finished = [event["variant"] for event in events if event["event"] == "variant_finished"]
    assert finished == ["base", "int8", "prune-60", "static"]
    assert all(event["total"] == 4 for event in events)


class Interrupted(Exception):
    pass


def test_resume_reuses_finished_variants(workspace):
    out = workspace / "out"

    def stop_after_int8(event):
        if event["event"] == "variant_finished" and event["variant"] == "int8":
            raise Interrupted

    with pytest.raises(Interrupted):
        run_audit(job(), out_dir=out, base_dir=workspace, progress=stop_after_int8)
    first = json.loads((out / ".variants" / "int8.json").read_text())["result"]

    report = run_audit(job(), out_dir=out, base_dir=workspace, resume=True)
    names = [variant["name"] for variant in report["variants"]]
    assert names == ["base", "int8", "prune-60", "static"]
    assert report["variants"][1]["timings"] == first["timings"]
    assert not (out / ".variants").exists()


def test_resume_ignores_changed_recipe(workspace):
    out = workspace / "out"

    def stop_after_int8(event):
        if event["event"] == "variant_finished" and event["variant"] == "int8":
            raise Interrupted

    with pytest.raises(Interrupted):
        run_audit(job(), out_dir=out, base_dir=workspace, progress=stop_after_int8)
    changed = [{"name": "int8", "steps": [{"method": "quantize_dynamic", "weight_type": "uint8"}]}]
    report = run_audit(job(recipes=changed), out_dir=out, base_dir=workspace, resume=True)
    assert report["variants"][1]["steps"][0]["options"] == {"weight_type": "uint8"}


def test_multiclass_model_audit(tmp_path):
    export_mlp(tmp_path / "model.onnx", n_features=4, n_classes=3, head="probabilities", seed=4)
    table = make_table(300, seed=5)
    names = np.array(["Low", "Medium", "High"])
    table["label"] = names[np.digitize(table["f0"], [-0.5, 0.5])]
    table.to_csv(tmp_path / "eval.csv", index=False)
    spec = job(
        data={"evaluation": "eval.csv", "label": "label", "sensitive": ["group"], "classes": ["Low", "Medium", "High"]},
        recipes=[{"name": "int8", "steps": [{"method": "quantize_dynamic"}]}],
    )
    report = run_audit(spec, out_dir=tmp_path / "out", base_dir=tmp_path)
    jsonschema.validate(report, load_schema())
    base = report["variants"][0]
    assert report["data"]["classes"] == ["Low", "Medium", "High"]
    assert report["data"]["positive_class"] is None
    assert set(base["metrics"]["by_group"]["group"]["a"]["per_class"]) == {"Low", "Medium", "High"}
    assert "tpr_difference:Medium" in base["metrics"]["gaps"]["group"]


def test_other_columns_and_single_logit(tmp_path):
    export_mlp(tmp_path / "scorer.onnx", n_features=3, head="single", seed=6, input_name="x")
    rng = np.random.default_rng(7)
    table = pd.DataFrame(
        {
            "income_k": rng.normal(50, 10, 500),
            "tenure": rng.normal(5, 2, 500),
            "debt": rng.normal(10, 3, 500),
            "gender": rng.choice(["F", "M", "X"], 500),
            "age_band": rng.choice(["<30", "30-60", ">60"], 500),
            "approved": rng.choice(["yes", "no"], 500),
        }
    )
    table.to_csv(tmp_path / "applicants.csv", index=False)
    spec = job(
        model="scorer.onnx",
        data={
            "evaluation": "applicants.csv",
            "label": "approved",
            "positive_label": "yes",
            "sensitive": ["gender", "age_band"],
            "features": ["income_k", "tenure", "debt"],
        },
        recipes=[{"name": "fp16", "steps": [{"method": "fp16"}]}],
    )
    report = run_audit(spec, out_dir=tmp_path / "out", base_dir=tmp_path)
    assert report["data"]["model_output"]["kind"] == "single_score"
    assert set(report["variants"][0]["metrics"]["gaps"]) == {"gender", "age_band", "gender&age_band"}
    assert report["data"]["classes"] == ["no", "yes"]


def test_static_quantization_needs_training(workspace):
    spec = job(data={"evaluation": "eval.csv", "label": "label", "sensitive": ["group"]})
    with pytest.raises(SpecError, match="recipes static need a training table"):
        run_audit(spec, out_dir=workspace / "out", base_dir=workspace)


def test_training_equal_to_evaluation_rejected(workspace):
    spec = job(data={"evaluation": "eval.csv", "training": "eval.csv", "label": "label", "sensitive": ["group"]})
    with pytest.raises(SpecError, match="name the same file"):
        run_audit(spec, out_dir=workspace / "out", base_dir=workspace)


def test_bad_table_stops_before_variants(workspace):
    table = pd.read_csv(workspace / "eval.csv").drop(columns=["f3"])
    table.to_csv(workspace / "eval.csv", index=False)
    with pytest.raises(DataError, match="expects 4 features but evaluation table eval.csv gives 3"):
        run_audit(job(), out_dir=workspace / "out", base_dir=workspace)
    assert not (workspace / "out" / "report.json").exists()


def test_small_group_flagged(workspace):
    table = pd.read_csv(workspace / "eval.csv")
    table.loc[:9, "group"] = "tiny"
    table.to_csv(workspace / "eval.csv", index=False)
    report = run_audit(job(recipes=[RECIPES[0]]), out_dir=workspace / "out", base_dir=workspace)
    base = report["variants"][0]
    assert base["metrics"]["by_group"]["group"]["tiny"]["small"] is True
    assert any("tiny" in warning for warning in base["warnings"])
