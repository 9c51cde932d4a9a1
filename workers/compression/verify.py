"""The checks every compressed model passes before a method returns it."""

from __future__ import annotations

import logging

import onnx

from workers.compression.base import CompressionError

logger = logging.getLogger(__name__)


def check_compressed_model(model: onnx.ModelProto, reference: onnx.ModelProto, method: str) -> None:
    """Check that `model` is valid ONNX, keeps the input and output names of `reference` and loads in
    ONNX Runtime on the CPU. Raises CompressionError naming the check that failed."""
    import onnxruntime

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise CompressionError(f"{method} produced an invalid ONNX model: {error}") from error

    expected_inputs = input_names(reference)
    actual_inputs = input_names(model)
    if actual_inputs != expected_inputs:
        raise CompressionError(
            f"{method} changed the model's inputs from {expected_inputs} to {actual_inputs}; "
            "the evaluation feeds inputs by name, so this variant cannot be evaluated"
        )
    expected_outputs = [output.name for output in reference.graph.output]
    actual_outputs = [output.name for output in model.graph.output]
    if actual_outputs != expected_outputs:
        raise CompressionError(
            f"{method} changed the model's outputs from {expected_outputs} to {actual_outputs}"
        )

    try:
        onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as error:
        # ONNX Runtime's pybind errors (Fail, NotImplemented, InvalidGraph, ...) share no base
        # class narrower than Exception.
        raise CompressionError(
            f"ONNX Runtime (CPU) cannot load the model {method} produced: {error}"
        ) from error


def input_names(model: onnx.ModelProto) -> list[str]:
    """Return the names of the graph inputs that are not initializers, in graph order."""
    initializer_names = {tensor.name for tensor in model.graph.initializer}
    return [value.name for value in model.graph.input if value.name not in initializer_names]
