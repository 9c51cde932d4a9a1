"""Every intervention at every placement through the audit pipeline, the report's comparison section,
and the job spec's checks of interventions."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.workers.training.fixtures import FEATURES, biased_table, export_onnx, train_mlp
from workers.pipeline import run_audit
from workers.report import load_schema
from workers.spec import INTERVENTION_METHODS, PLACEMENTS, SpecError, parse_spec

STEPS = [{"method": "prune", "scope": "global", "sparsity": 0.5}, {"method": "finetune", "epochs": 2}]
GRID = [(method, placement) for method in INTERVENTION_METHODS for placement in PLACEMENTS]


def data_section(**overrides):
    data = {"evaluation": "eval.csv", "training": "train.csv", "label": "label", "sensitive": ["group"],
            "features": FEATURES}
    data.update(overrides)
    return data


def job(recipes, **overrides):
    raw = {
        "model": "model.onnx",
        "data": data_section(),
        "recipes": recipes,
        "bootstrap": {"resamples": 100},
        "evaluation": {"latency_runs": 0},
    }
    raw.update(overrides)
    return parse_spec(raw)


def grid_recipes():
    recipes = [{"name": "plain", "steps": STEPS}]
    for method, placement in GRID:
        intervention = {"method": method, "placement": placement, "epochs": 1, "share": 0.05}
        recipes.append({"name": f"{method}-{placement}", "steps": STEPS, "intervention": intervention})
    return recipes


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("placements")
    train = biased_table(1000, seed=0)
    train.to_csv(folder / "train.csv", index=False)
    biased_table(600, seed=1).to_csv(folder / "eval.csv", index=False)
    export_onnx(train_mlp(train, hidden=12), folder / "model.onnx")
    return folder


@pytest.fixture(scope="module")
def report(workspace):
    return run_audit(job(grid_recipes()), out_dir=workspace / "out", base_dir=workspace)


def variant(report, name):
    return next(entry for entry in report["variants"] if entry["name"] == name)


def test_grid_report_matches_schema(report):
    jsonschema.validate(report, load_schema())


@pytest.mark.parametrize(("method", "placement"), GRID)
def test_placement_variant_succeeds(report, method, placement):
    entry = variant(report, f"{method}-{placement}")
    assert entry["status"] == "succeeded", entry.get("error")
    assert entry["intervention"]["method"] == method
    assert entry["intervention"]["placement"] == placement
    assert entry["intervention"]["attribute"] == "group"


@pytest.mark.parametrize(("method", "placement"), GRID)
def test_placement_compared_with_plain(report, method, placement):
    comparison = next(entry for entry in report["comparisons"] if entry["variant"] == f"{method}-{placement}")
    assert comparison["reference"] == "plain"
    assert comparison["status"] == "compared"
    change = comparison["change"]["gaps"]["group"]["equalized_odds_difference"]
    assert len(change["ci"]) == 2


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_thresholds_file_beside_model(report, workspace, placement):
    entry = variant(report, f"thresholds-{placement}")
    rules = json.loads((workspace / "out" / entry["thresholds"]["path"]).read_text())
    assert entry["thresholds"]["path"] == f"thresholds-{placement}.thresholds.json"
    assert rules["attribute"] == "group"
    assert any("sensitive attribute 'group'" in warning for warning in entry["warnings"])


def test_comparison_change_matches_accuracies(report):
    comparison = next(entry for entry in report["comparisons"] if entry["variant"] == "thresholds-after")
    expected = comparison["accuracy"]["variant"] - comparison["accuracy"]["reference"]
    assert comparison["change"]["overall"]["accuracy_change"]["value"] == pytest.approx(expected)


def test_training_before_changes_base(report):
    entry = variant(report, "adversarial-before")
    assert entry["steps"][0]["method"] == "adversarial"
    assert entry["steps"][0]["intervention"] is True


def test_missing_reference_skipped(workspace, tmp_path):
    recipes = [{"name": "alone", "steps": STEPS, "intervention": {"method": "reweighing", "placement": "during"}}]
    report = run_audit(job(recipes), out_dir=tmp_path, base_dir=workspace)
    (comparison,) = report["comparisons"]
    assert comparison["status"] == "skipped"
    assert "without an intervention" in comparison["reason"]


def test_resume_keeps_comparisons(workspace, tmp_path):
    recipes = [
        {"name": "plain", "steps": STEPS},
        {"name": "fair", "steps": STEPS, "intervention": {"method": "thresholds", "placement": "after"}},
    ]
    first = run_audit(job(recipes), out_dir=tmp_path, base_dir=workspace)
    second = run_audit(job(recipes), out_dir=tmp_path, base_dir=workspace, resume=True)
    assert second["comparisons"] == first["comparisons"]


def test_no_comparisons_without_interventions(workspace, tmp_path):
    report = run_audit(job([{"name": "plain", "steps": STEPS}]), out_dir=tmp_path, base_dir=workspace)
    assert "comparisons" not in report


@pytest.mark.parametrize(
    ("steps", "intervention", "message"),
    [
        ([{"method": "prune", "sparsity": 0.5}], {"method": "reweighing", "placement": "during"}, "add a finetune"),
        ([{"method": "low_rank", "rank_ratio": 0.5}], {"method": "fair_pruning", "placement": "during"}, "add a prune"),
        (STEPS, {"method": "adversarial", "placement": "after", "attribute": "age"}, "not a sensitive column"),
    ],
)
def test_spec_rejects_intervention(steps, intervention, message):
    with pytest.raises(SpecError, match=message):
        job([{"name": "r", "steps": steps, "intervention": intervention}])


def test_spec_defaults_strength_per_method():
    spec = job(
        [
            {"name": "a", "steps": STEPS, "intervention": {"method": "adversarial", "placement": "during"}},
            {"name": "f", "steps": STEPS, "intervention": {"method": "fair_pruning", "placement": "during"}},
        ]
    )
    assert spec.recipes[0].intervention.strength == 1.0
    assert spec.recipes[1].intervention.strength == 0.3


def test_intervention_needs_training_table():
    recipes = [{"name": "t", "steps": [{"method": "fp16"}], "intervention": {"method": "thresholds", "placement": "after"}}]
    data = {"evaluation": "eval.csv", "label": "label", "sensitive": ["group"]}
    with pytest.raises(SpecError, match="names no training table"):
        job(recipes, data=data)


def test_training_after_quantization_fails(workspace, tmp_path):
    recipes = [
        {"name": "q", "steps": [{"method": "quantize_dynamic"}]},
        {"name": "q-adv", "steps": [{"method": "quantize_dynamic"}],
         "intervention": {"method": "adversarial", "placement": "after"}},
    ]
    report = run_audit(job(recipes), out_dir=tmp_path, base_dir=workspace)
    entry = variant(report, "q-adv")
    assert entry["status"] == "failed"
    assert "quantize" in entry["error"]
