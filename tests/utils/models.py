"""Tiny models and tables built inside the tests, with fixed seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def export_mlp(
    path: Path,
    *,
    n_features: int = 4,
    n_classes: int = 2,
    hidden: int = 8,
    seed: int = 0,
    head: str = "logits",
    input_name: str = "input",
) -> Path:
    """Export a two-layer MLP to ONNX. `head` is logits, probabilities or single (one logit)."""
    import torch

    torch.manual_seed(seed)
    out_features = 1 if head == "single" else n_classes
    layers = [torch.nn.Linear(n_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, out_features)]
    if head == "probabilities":
        layers.append(torch.nn.Softmax(dim=1))
    model = torch.nn.Sequential(*layers).eval()
    torch.onnx.export(
        model,
        (torch.randn(2, n_features),),
        str(path),
        input_names=[input_name],
        output_names=["output"],
        dynamic_axes={input_name: {0: "batch"}, "output": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def make_table(
    rows: int = 400,
    *,
    n_features: int = 4,
    seed: int = 0,
    groups: tuple[str, ...] = ("a", "b"),
    label_values: tuple[object, object] = (0, 1),
) -> pd.DataFrame:
    """Random features, a label that depends on them, and a sensitive column `group`."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, n_features))
    group = rng.choice(groups, size=rows)
    score = features[:, 0] + 0.5 * features[:, 1] + rng.normal(scale=0.5, size=rows)
    label = np.where(score > 0, label_values[1], label_values[0])
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(n_features)])
    frame["group"] = group
    frame["label"] = label
    return frame
