"""Tiny biased tables and a trained two-layer MLP, built inside the tests with fixed seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd

from workers.compression import CompressionContext
from workers.data import PreparedData, prepare_table
from workers.inference import model_input_specs
from workers.spec import DataSpec

FEATURES = ["f0", "f1", "f2", "f3"]
DATA = DataSpec(evaluation="eval.csv", training="train.csv", label="label", sensitive=["group"], features=FEATURES)


def biased_table(rows: int = 1200, *, seed: int = 0, flip_labels: bool = False) -> pd.DataFrame:
    """Features, a binary label and a group column; group 'b' is a minority with a lower positive rate,
    and f3 is a noisy copy of the group, so a model can learn to treat the groups differently."""
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(rows) < 0.3, "b", "a")
    minority = group == "b"
    features = rng.normal(size=(rows, 4))
    features[:, 3] = minority * 1.5 + rng.normal(scale=0.5, size=rows)
    score = features[:, 0] + 0.5 * features[:, 1] - 1.2 * minority + rng.normal(scale=0.6, size=rows)
    label = (score > 0).astype(int)
    if flip_labels:
        label = 1 - label
    frame = pd.DataFrame(features, columns=FEATURES)
    frame["group"] = group
    frame["label"] = label
    return frame


def train_mlp(table: pd.DataFrame, *, hidden: int = 16, seed: int = 0, steps: int = 300) -> Any:
    """Return a torch MLP (4 -> hidden -> hidden -> 2) trained on the table with full-batch Adam."""
    import torch

    torch.manual_seed(seed)
    module = torch.nn.Sequential(
        torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, 2),
    )
    inputs = torch.tensor(table[FEATURES].to_numpy(), dtype=torch.float32)
    labels = torch.tensor(table["label"].to_numpy(), dtype=torch.int64)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.02)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(module(inputs), labels).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return module.eval()


def export_onnx(module: Any, path: Path | None = None) -> onnx.ModelProto:
    """Export the MLP with input 'input' and output 'output', both with a dynamic batch axis."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (torch.randn(2, 4),),
        buffer,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    model = onnx.load_from_string(buffer.getvalue())
    if path is not None:
        onnx.save(model, str(path))
    return model


def prepared(table: pd.DataFrame, model: onnx.ModelProto) -> PreparedData:
    return prepare_table(table, DATA, model_input_specs(model), 2, source="test table")


def make_context(
    work_dir: Path, training: PreparedData | None, *, intervention: Any = None, messages: list | None = None,
    events: list | None = None, seed: int = 0,
) -> CompressionContext:
    return CompressionContext(
        work_dir=work_dir,
        seed=seed,
        training=training,
        output_name="output",
        intervention=intervention,
        log=(messages.append if messages is not None else (lambda message: None)),
        progress=(events.append if events is not None else (lambda event: None)),
    )


def run_onnx(model: onnx.ModelProto, features: np.ndarray) -> np.ndarray:
    """Return the model's logits for the rows, from ONNX Runtime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": features.astype(np.float32)})[0]


def accuracy(model: onnx.ModelProto, table: pd.DataFrame) -> float:
    predictions = run_onnx(model, table[FEATURES].to_numpy()).argmax(axis=1)
    return float(np.mean(predictions == table["label"].to_numpy()))


def equalized_odds_gap(predictions: np.ndarray, table: pd.DataFrame) -> float:
    """Return the larger of the TPR and FPR differences between groups a and b."""
    labels = table["label"].to_numpy()
    groups = table["group"].to_numpy()
    gaps = []
    for label in (0, 1):
        rates = [np.mean(predictions[(groups == group) & (labels == label)] == 1) for group in ("a", "b")]
        gaps.append(abs(rates[0] - rates[1]))
    return float(max(gaps))


def zero_weights(model: onnx.ModelProto) -> int:
    return sum(
        int(np.sum(onnx.numpy_helper.to_array(tensor) == 0)) for tensor in model.graph.initializer if len(tensor.dims) >= 2
    )
