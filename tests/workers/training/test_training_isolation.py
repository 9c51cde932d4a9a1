"""Training reads the training table only: an evaluation table with inverted labels leaves it unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from tests.workers.training.fixtures import FEATURES, biased_table, export_onnx, train_mlp
from workers.pipeline import _compression_context, check_inputs, run_audit
from workers.spec import SpecError, parse_spec

TRAIN_ROWS = 1200
EVAL_ROWS = 800


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("isolation")
    train = biased_table(TRAIN_ROWS, seed=0)
    train.to_csv(folder / "train.csv", index=False)
    # Every evaluation label is inverted: training on these rows would flip the model's predictions.
    biased_table(EVAL_ROWS, seed=1, flip_labels=True).to_csv(folder / "eval.csv", index=False)
    export_onnx(train_mlp(train), folder / "model.onnx")
    return folder


def job(**recipes_and_data):
    raw = {
        "model": "model.onnx",
        "data": {"evaluation": "eval.csv", "training": "train.csv", "label": "label", "sensitive": ["group"],
                 "features": FEATURES},
        "recipes": [
            {"name": "tuned", "steps": [{"method": "finetune", "epochs": 6, "learning_rate": 0.01}]},
            {
                "name": "student",
                "steps": [{"method": "distill", "width_ratio": 0.5, "epochs": 20, "batch_size": 32, "learning_rate": 0.01}],
            },
            {
                "name": "tuned-adversarial",
                "steps": [{"method": "finetune", "epochs": 4}],
                "intervention": {"method": "adversarial", "placement": "during"},
            },
        ],
        "bootstrap": {"resamples": 50},
        "evaluation": {"latency_runs": 0},
    }
    raw.update(recipes_and_data)
    return parse_spec(raw)


@pytest.fixture(scope="module")
def report(workspace):
    return run_audit(job(), out_dir=workspace / "out", base_dir=workspace)


def test_context_holds_training_rows(workspace, tmp_path):
    inputs = check_inputs(job(), base_dir=workspace)
    context = _compression_context(job(), inputs, tmp_path, "cpu")
    expected = biased_table(TRAIN_ROWS, seed=0)
    assert context.training.rows == TRAIN_ROWS
    assert np.array_equal(context.training.labels, expected["label"].to_numpy())
    assert np.allclose(context.training.inputs["input"], expected[FEATURES].to_numpy(dtype=np.float32))


@pytest.mark.parametrize("name", ["tuned", "student", "tuned-adversarial"])
def test_inverted_evaluation_labels_ignored(report, name):
    # The base model scores about 0.18 on the inverted labels; a model trained on them would pass 0.5.
    variant = next(entry for entry in report["variants"] if entry["name"] == name)
    assert variant["status"] == "succeeded", variant.get("error")
    assert variant["checks"]["agreement_with_base"] >= 0.75
    assert variant["metrics"]["overall"]["accuracy"] < 0.4


def test_training_method_needs_training_table():
    data = {"evaluation": "eval.csv", "label": "label", "sensitive": ["group"]}
    with pytest.raises(SpecError, match="names no training table"):
        job(data=data)


def test_training_table_not_evaluation_table(workspace):
    data = {"evaluation": "eval.csv", "training": "eval.csv", "label": "label", "sensitive": ["group"],
            "features": FEATURES}
    with pytest.raises(SpecError, match="same file"):
        check_inputs(job(data=data), base_dir=workspace)
