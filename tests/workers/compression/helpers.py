"""Helpers for the compression method tests: export, apply, run and measure."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import onnx

from workers.compression import CompressionContext, get_method


def export_module(module: Any, example: tuple, input_names: list[str], opset: int = 17) -> onnx.ModelProto:
    """Export a torch module to ONNX in memory with a dynamic batch axis on every input and output."""
    import torch

    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in [*input_names, "logits"]}
    torch.onnx.export(
        module.eval(),
        example,
        buffer,
        input_names=input_names,
        output_names=["logits"],
        dynamic_axes=axes,
        opset_version=opset,
        dynamo=False,
    )
    return onnx.load_from_string(buffer.getvalue())


def compress(
    model: onnx.ModelProto, method: str, context: CompressionContext, **options: Any
) -> onnx.ModelProto:
    """Validate `options` with the method's config model and apply the method."""
    registered = get_method(method)
    return registered.apply(model, registered.config_model.model_validate(options), context)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Run `model` in ONNX Runtime on the CPU and return its first output."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def agreement(first: np.ndarray, second: np.ndarray) -> float:
    """Return the share of rows where two logit arrays predict the same class."""
    return float(np.mean(first.argmax(axis=1) == second.argmax(axis=1)))


def weight_sparsities(model: onnx.ModelProto) -> dict[str, float]:
    """Map each weight initializer (two or more dimensions) to its share of zeros."""
    sparsities = {}
    for tensor in model.graph.initializer:
        values = onnx.numpy_helper.to_array(tensor)
        if values.ndim >= 2:
            sparsities[tensor.name] = float(np.mean(values == 0))
    return sparsities


def prunable_weights(model: onnx.ModelProto) -> list[np.ndarray]:
    return [onnx.numpy_helper.to_array(tensor) for tensor in model.graph.initializer if len(tensor.dims) >= 2]
