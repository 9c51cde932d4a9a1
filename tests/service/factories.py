"""Tiny models, tables and job specs for the service tests, built with fixed seeds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ["f0", "f1", "f2", "f3"]
CHEAP_RECIPES = [
    {"name": "int8-dynamic", "steps": [{"method": "quantize_dynamic"}]},
    {"name": "fp16", "steps": [{"method": "fp16"}]},
]


def export_tiny_mlp(path: Path, *, seed: int = 0, hidden: int = 8) -> Path:
    """Export a two-layer MLP (4 features in, 2 logits out) to ONNX with the TorchScript exporter."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(len(FEATURES), hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2)
    ).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.randn(2, len(FEATURES)),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def make_table(rows: int, *, seed: int) -> pd.DataFrame:
    """Features f0..f3, a sensitive column `sex` and a 0/1 `label` that depends on f0 and f1."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))).astype("float32"), columns=FEATURES)
    frame["sex"] = rng.choice(["female", "male"], size=rows)
    score = frame["f0"] + 0.5 * frame["f1"] + rng.normal(scale=0.5, size=rows)
    frame["label"] = (score > 0).astype("int64")
    return frame


def write_tables(folder: Path, *, rows: int = 400, seed: int = 0) -> tuple[Path, Path]:
    """Write evaluation and training CSV files and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    evaluation = folder / "eval.csv"
    training = folder / "train.csv"
    make_table(rows, seed=seed).to_csv(evaluation, index=False)
    make_table(rows, seed=seed + 1).to_csv(training, index=False)
    return evaluation, training


def job_spec(
    model: str,
    evaluation: str,
    training: str | None = None,
    *,
    recipes: list[dict[str, Any]] | None = None,
    resamples: int = 50,
) -> dict[str, Any]:
    """A job spec over the tables of `make_table`; `model` and the tables are ids or paths."""
    data: dict[str, Any] = {
        "evaluation": evaluation,
        "label": "label",
        "positive_label": 1,
        "sensitive": ["sex"],
        "features": FEATURES,
    }
    if training is not None:
        data["training"] = training
    return {
        "model": model,
        "data": data,
        "recipes": copy.deepcopy(recipes if recipes is not None else CHEAP_RECIPES),
        "bootstrap": {"resamples": resamples, "confidence": 0.95, "seed": 0},
        "evaluation": {"latency_runs": 0},
    }
