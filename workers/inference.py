"""Running an ONNX classifier in ONNX Runtime and turning its output into class predictions."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort

from workers.data import InputSpec
from workers.onnx_model import ModelError, graph_inputs

logger = logging.getLogger(__name__)

OutputKind = Literal["auto", "logits", "probabilities", "labels"]


@dataclass(frozen=True)
class OutputInterpretation:
    """The model output that carries the prediction, and how to read it."""

    name: str
    kind: Literal["scores", "single_score", "labels"]
    n_classes: int


def create_session(model: onnx.ModelProto | bytes | str, *, device: str = "cpu") -> ort.InferenceSession:
    """Build an ONNX Runtime session, on CUDA when requested and available."""
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(payload, sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        raise ModelError(f"ONNX Runtime cannot load the model: {error}") from error


def model_input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    specs = []
    for value in graph_inputs(model):
        if not value.type.HasField("tensor_type"):
            raise ModelError(f"model input '{value.name}' is not a tensor; fairsqueeze feeds tensors only")
        tensor_type = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        shape = None
        if tensor_type.HasField("shape"):
            shape = [
                dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None) for dim in tensor_type.shape.dim
            ]
        specs.append(InputSpec(name=value.name, dtype=dtype, shape=shape))
    return specs


def interpret_outputs(
    session: ort.InferenceSession,
    sample: dict[str, np.ndarray],
    *,
    output_name: str | None = None,
    output_kind: OutputKind = "auto",
) -> OutputInterpretation:
    """Pick the output that carries the prediction and find the number of classes.

    A float output of shape [batch, K] with K >= 2 contains logits or probabilities, read by argmax.
    A float output of shape [batch] or [batch, 1] contains one score for the positive class. An integer
    output of shape [batch] holds class labels.
    """
    outputs = session.get_outputs()
    names = [output.name for output in outputs]
    if output_name is not None and output_name not in names:
        raise ModelError(f"output '{output_name}' not found in the model; outputs: {', '.join(names)}")

    values = session.run(None, sample)
    candidates = [(output_name, values[names.index(output_name)])] if output_name else list(zip(names, values))
    for name, value in candidates:
        array = np.asarray(value) if isinstance(value, np.ndarray) else None
        if array is None:
            continue
        interpretation = _interpret_array(name, array, output_kind)
        if interpretation is not None:
            return interpretation
    shapes = ", ".join(f"{name}: {getattr(value, 'shape', type(value).__name__)}" for name, value in zip(names, values))
    raise ModelError(
        f"no model output looks like class scores or labels ({shapes}); a classifier needs a float output of "
        "shape [batch, classes], [batch] or [batch, 1], or an integer label output of shape [batch]"
    )


def _interpret_array(name: str, array: np.ndarray, output_kind: OutputKind) -> OutputInterpretation | None:
    if array.ndim == 0:
        return None
    if np.issubdtype(array.dtype, np.integer) or output_kind == "labels":
        if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1):
            return OutputInterpretation(name=name, kind="labels", n_classes=0)
        return None
    if not np.issubdtype(array.dtype, np.floating):
        return None
    if array.ndim == 2 and array.shape[1] >= 2:
        return OutputInterpretation(name=name, kind="scores", n_classes=int(array.shape[1]))
    if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1):
        return OutputInterpretation(name=name, kind="single_score", n_classes=2)
    return None


def predict(
    session: ort.InferenceSession,
    inputs: dict[str, np.ndarray],
    interpretation: OutputInterpretation,
    *,
    batch_size: int,
    output_kind: OutputKind = "auto",
    threshold: float | None = None,
) -> np.ndarray:
    """Return the predicted class index of every row."""
    rows = next(iter(inputs.values())).shape[0]
    predictions = []
    for start in range(0, rows, batch_size):
        batch = {name: array[start : start + batch_size] for name, array in inputs.items()}
        (output,) = session.run([interpretation.name], batch)
        predictions.append(_to_classes(np.asarray(output), interpretation, output_kind, threshold))
    return np.concatenate(predictions).astype(np.int64)


def _to_classes(
    output: np.ndarray, interpretation: OutputInterpretation, output_kind: OutputKind, threshold: float | None
) -> np.ndarray:
    if interpretation.kind == "labels":
        return output.reshape(-1).astype(np.int64)
    if interpretation.kind == "scores":
        return np.argmax(output, axis=1)

    scores = output.reshape(-1).astype(np.float64)
    if threshold is None:
        probabilities = output_kind == "probabilities" or (
            output_kind == "auto" and bool(np.all((scores >= 0.0) & (scores <= 1.0)))
        )
        threshold = 0.5 if probabilities else 0.0
    return (scores > threshold).astype(np.int64)


def measure_latency(
    session: ort.InferenceSession, inputs: dict[str, np.ndarray], *, batch_size: int, runs: int
) -> dict[str, float | int] | None:
    """Time `runs` calls on one batch after a warm-up call; return the mean and the spread in ms."""
    if runs <= 0:
        return None
    batch = {name: array[:batch_size] for name, array in inputs.items()}
    session.run(None, batch)
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, batch)
        timings.append((time.perf_counter() - start) * 1000.0)
    return {
        "batch_size": int(next(iter(batch.values())).shape[0]),
        "runs": runs,
        "mean_ms": float(np.mean(timings)),
        "p50_ms": float(np.percentile(timings, 50)),
        "p95_ms": float(np.percentile(timings, 95)),
    }
