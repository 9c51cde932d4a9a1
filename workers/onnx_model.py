"""Loading, validating and describing ONNX classifiers.

ONNX files are protobuf messages, so nothing here unpickles. External tensor data is loaded only
when every location it names resolves to a file inside the model's folder.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx.external_data_helper import uses_external_data

from workers.compression.stats import count_parameters

logger = logging.getLogger(__name__)

MIN_OPSET = 7


class ModelError(ValueError):
    """The ONNX model is unreadable or unusable; the message names the problem and the value."""


def load_model(path: Path) -> onnx.ModelProto:
    """Load an ONNX model with its external data and check it; raise ModelError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, OSError or its own errors
        raise ModelError(f"cannot read {path} as an ONNX model: {error}; export the model to ONNX first") from error

    _check_external_data(model, path.parent)
    if any(uses_external_data(tensor) for tensor in model.graph.initializer):
        onnx.load_external_data_for_model(model, str(path.parent))

    validate_model(model, source=str(path))
    return model


def _check_external_data(model: onnx.ModelProto, model_dir: Path) -> None:
    root = model_dir.resolve()
    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        target = (root / location).resolve()
        if not location or not target.is_relative_to(root):
            raise ModelError(
                f"initializer '{tensor.name}' names external data location '{location}' outside the model's "
                f"folder {root}; keep external data files beside the model"
            )
        if not target.is_file():
            raise ModelError(
                f"initializer '{tensor.name}' names external data file '{location}', which is missing "
                f"from {root}; upload or copy it beside the model"
            )


def validate_model(model: onnx.ModelProto, *, source: str = "model") -> None:
    """Check structure, opset, inputs and outputs; raise ModelError naming what is wrong."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise ModelError(f"{source} fails onnx.checker: {error}") from error

    opset = default_opset(model)
    newest = onnx.defs.onnx_opset_version()
    if opset is None or not MIN_OPSET <= opset <= newest:
        raise ModelError(
            f"{source} uses opset {opset} of the default ONNX domain; supported opsets are "
            f"{MIN_OPSET} to {newest}; re-export the model with a supported opset"
        )

    if not graph_inputs(model):
        raise ModelError(f"{source} has no inputs besides its initializers; a classifier needs at least one input")
    if not model.graph.output:
        raise ModelError(f"{source} has no outputs; a classifier needs logits, probabilities or labels")


def default_opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Return the inputs a caller feeds, leaving out initializers listed as inputs."""
    initializer_names = {tensor.name for tensor in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializer_names]


def describe_value(value: onnx.ValueInfoProto) -> dict[str, Any]:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        return {"name": value.name, "dtype": value.type.WhichOneof("value") or "unknown", "shape": None}
    shape: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            shape.append(dim.dim_param)
        else:
            shape.append(None)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type) if tensor_type.elem_type else None
    return {
        "name": value.name,
        "dtype": str(np.dtype(dtype)) if dtype is not None else "unknown",
        "shape": shape if tensor_type.HasField("shape") else None,
    }


def file_facts(path: Path) -> dict[str, int | str]:
    """Return size, gzip size and sha256 of a model file."""
    data = Path(path).read_bytes()
    return {
        "bytes": len(data),
        "gzip_bytes": len(gzip.compress(data, compresslevel=6, mtime=0)),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def describe_model(path: Path) -> dict[str, Any]:
    """Validate a model file and return what the API reports about it."""
    model = load_model(Path(path))
    parameters, nonzero = count_parameters(model)
    facts = file_facts(Path(path))
    return {
        "sha256": facts["sha256"],
        "bytes": facts["bytes"],
        "opset": default_opset(model),
        "inputs": [describe_value(value) for value in graph_inputs(model)],
        "outputs": [describe_value(value) for value in model.graph.output],
        "parameters": parameters,
        "nonzero_parameters": nonzero,
    }


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Write a model as one self-contained file (external data folded in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=False)
