"""The study: the grid of compressions and placements, its table, plot and command."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import pytest
import yaml

from service.cli import main
from tests.workers.training.fixtures import FEATURES, biased_table, export_onnx, train_mlp
from workers.spec import parse_spec
from workers.study import run_study, study_recipes

PRUNE = [{"method": "prune", "scope": "global", "sparsity": 0.5}, {"method": "finetune", "epochs": 1}]
DISTILL = [{"method": "distill", "width_ratio": 0.5, "epochs": 1}]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    train = biased_table(800, seed=0)
    train.to_csv(folder / "train.csv", index=False)
    biased_table(400, seed=1).to_csv(folder / "eval.csv", index=False)
    export_onnx(train_mlp(train, hidden=8, steps=150), folder / "model.onnx")
    spec = {
        "model": "model.onnx",
        "data": {"evaluation": "eval.csv", "training": "train.csv", "label": "label", "sensitive": ["group"],
                 "features": FEATURES},
        "recipes": [{"name": "pruned", "steps": PRUNE}],
        "bootstrap": {"resamples": 50},
        "evaluation": {"latency_runs": 0},
    }
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    return folder


def test_grid_skips_impossible_placements():
    recipes, skipped = study_recipes({"p": PRUNE, "d": DISTILL}, ["fair_pruning", "reweighing"], None)
    names = [recipe["name"] for recipe in recipes]
    assert "p.fair_pruning.during" in names
    assert "d.fair_pruning.during" not in names
    assert [(entry["compression"], entry["placement"]) for entry in skipped] == [("d", "during")]


def test_grid_has_none_row_per_compression():
    recipes, _ = study_recipes({"p": PRUNE, "d": DISTILL}, ["thresholds"], "group")
    assert len(recipes) == 2 * (1 + 3)
    assert all(recipe["intervention"]["attribute"] == "group" for recipe in recipes if "intervention" in recipe)


@pytest.fixture(scope="module")
def study(workspace):
    spec = parse_spec(yaml.safe_load((workspace / "spec.yaml").read_text()))
    return run_study(
        spec,
        out_dir=workspace / "out",
        base_dir=workspace,
        compressions={"pruned": PRUNE},
        interventions=["thresholds", "reweighing"],
    )


def test_study_rows_cover_grid(study):
    assert len(study["rows"]) == 1 + 1 + 2 * 3
    assert all(row["status"] == "succeeded" for row in study["rows"])


def test_study_rows_carry_paired_change(study):
    row = next(row for row in study["rows"] if row["variant"] == "pruned.thresholds.after")
    assert row["placement"] == "after"
    assert len(row["gap_change"]["ci"]) == 2


def test_study_writes_table_and_plot(study, workspace):
    table = (workspace / "out" / "study.md").read_text()
    plot = ElementTree.fromstring((workspace / "out" / "study.svg").read_text())
    saved = json.loads((workspace / "out" / "study.json").read_text())
    assert table.startswith("| compression | intervention | placement |")
    assert len(plot.findall("{http://www.w3.org/2000/svg}circle")) >= len(study["rows"])
    assert saved["rows"] == study["rows"]


def test_study_command_runs(workspace, tmp_path, capsys):
    code = main(
        ["study", "--spec", str(workspace / "spec.yaml"), "--out", str(tmp_path), "--interventions", "thresholds"]
    )
    assert code == 0
    assert "pruned | thresholds | before" in capsys.readouterr().out
    assert (tmp_path / "report.json").is_file()


def test_study_command_rejects_unknown_intervention(workspace, tmp_path):
    code = main(["study", "--spec", str(workspace / "spec.yaml"), "--out", str(tmp_path), "--interventions", "magic"])
    assert code == 2
