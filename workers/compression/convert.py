"""Conversion between ONNX models and torch modules, for the methods that edit weights in torch.

`onnx_to_torch` builds a torch.fx module with onnx2torch, and `torch_to_onnx` exports a module
back with the TorchScript exporter, keeping the input names, dtypes, dynamic axes, output names
and (where torch supports it) the opset of the model it came from.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from workers.compression.base import CompressionError
from workers.compression.verify import check_compressed_model, input_names

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# Methods that work on the ONNX graph directly and so need no conversion to torch.
ONNX_ONLY_METHODS = ("quantize_dynamic", "quantize_static", "fp16")

EXAMPLE_BATCH_SIZE = 2
# Size given to a symbolic dimension other than the first when building example inputs.
EXAMPLE_SYMBOLIC_SIZE = 32
# Opset range of the TorchScript exporter (torch.onnx._constants in torch 2.x), used when torch
# does not expose it.
FALLBACK_MIN_OPSET = 7
FALLBACK_MAX_OPSET = 20


def onnx_to_torch(model: onnx.ModelProto) -> torch.nn.Module:
    """Convert `model` to a torch module in eval mode.

    Raises CompressionError naming the operators that onnx2torch cannot convert.
    """
    import onnx2torch

    unsupported = unsupported_operators(model)
    if unsupported:
        raise CompressionError(
            f"onnx2torch cannot convert the operator(s) {', '.join(unsupported)}, so this method, which "
            "edits the weights in torch, cannot apply to this model; the methods "
            f"{', '.join(ONNX_ONLY_METHODS)} work on the ONNX graph and may still apply"
        )

    try:
        module = onnx2torch.convert(_constants_as_initializers(model))
    except Exception as error:
        # Converters raise NotImplementedError for unsupported attributes and other types for graphs
        # they misread, and any of them means the model cannot be converted.
        raise CompressionError(
            f"onnx2torch failed to convert the model: {error}; the methods "
            f"{', '.join(ONNX_ONLY_METHODS)} work on the ONNX graph and may still apply"
        ) from error
    _matmuls_to_linear(module)
    module.eval()
    return module


def _constants_as_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of `model` where Constant nodes, and Identity nodes that copy an initializer,
    are initializers.

    onnx2torch builds a BatchNorm or Linear layer only when its parameters are initializers; the
    TorchScript exporter routes shared parameters through Identity nodes.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    output_names = {value.name for value in graph.output}

    kept = []
    for node in graph.node:
        tensor = _constant_tensor(node, initializers)
        if tensor is None or node.output[0] in output_names:
            kept.append(node)
            continue
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
        initializers[tensor.name] = tensor
    if len(kept) < len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
    return copy


def _constant_tensor(
    node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]
) -> onnx.TensorProto | None:
    """Return the tensor a Constant node (with a `value` attribute) or an Identity of an initializer
    produces, or None for any other node."""
    if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
        for attribute in node.attribute:
            if attribute.name == "value" and attribute.type == onnx.AttributeProto.TENSOR:
                tensor = onnx.TensorProto()
                tensor.CopyFrom(attribute.t)
                return tensor
        return None
    if node.op_type == "Identity" and node.domain in ("", "ai.onnx") and node.input[0] in initializers:
        tensor = onnx.TensorProto()
        tensor.CopyFrom(initializers[node.input[0]])
        return tensor
    return None


def _matmuls_to_linear(module: torch.fx.GraphModule) -> None:
    """Replace each MatMul of an activation by a constant 2-D weight with a Linear layer without bias.

    onnx2torch keeps such a MatMul (the form other exporters, and torch for a Linear without bias,
    write) as a plain matmul on a buffer, which the pruning and factorization methods would not see.
    """
    import torch
    from onnx2torch.node_converters.matmul import OnnxMatMul

    replaced = 0
    for node in list(module.graph.nodes):
        if node.op != "call_module" or not isinstance(module.get_submodule(node.target), OnnxMatMul):
            continue
        activation, weight_node = node.args
        if getattr(weight_node, "op", None) != "get_attr" or getattr(activation, "op", None) == "get_attr":
            continue
        weight = _fetch_attribute(module, weight_node.target)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not weight.is_floating_point():
            continue

        linear = torch.nn.Linear(weight.shape[0], weight.shape[1], bias=False, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight.T)
        module.add_submodule(node.target, linear)
        node.args = (activation,)
        replaced += 1

    if replaced:
        module.graph.eliminate_dead_code()
        module.graph.lint()
        module.recompile()
        logger.debug("turned %s MatMul node(s) with constant weights into Linear layers", replaced)


def _fetch_attribute(module: torch.nn.Module, target: str) -> object:
    value: object = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def unsupported_operators(model: onnx.ModelProto) -> list[str]:
    """Return the operators of `model` (subgraphs included) that onnx2torch has no converter for."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {_domain(entry.domain): entry.version for entry in model.opset_import}
    missing: list[str] = []
    for node in _all_nodes(model.graph):
        domain = _domain(node.domain)
        version = opsets.get(domain)
        label = node.op_type if domain == "" else f"{domain}.{node.op_type}"
        if version is None:
            label = f"{label} (domain '{domain}' has no opset import)"
        else:
            try:
                get_converter(operation_type=node.op_type, version=version, domain=domain)
                continue
            except NotImplementedError:
                label = f"{label} (opset {version})"
        if label not in missing:
            missing.append(label)
    return missing


def torch_to_onnx(
    module: torch.nn.Module, reference: onnx.ModelProto, path: Path | None = None
) -> onnx.ModelProto:
    """Export `module` to ONNX with the inputs, outputs, dynamic axes and opset of `reference`.

    The export goes to `path` when given (use it for large models), otherwise to memory. The
    example inputs have a batch of 2 and every symbolic dimension of `reference` stays dynamic.
    """
    import torch

    names = input_names(reference)
    output_names = [output.name for output in reference.graph.output]
    arguments = example_inputs(reference)
    opset = export_opset(reference)
    target: Path | io.BytesIO = path if path is not None else io.BytesIO()

    module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter warns that it is deprecated on every call.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            torch.onnx.export(
                module,
                arguments,
                target,
                input_names=names,
                output_names=output_names,
                dynamic_axes=dynamic_axes(reference),
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as error:
        # The exporter raises many unrelated types (RuntimeError, TypeError, torch.onnx errors).
        raise CompressionError(
            f"exporting the compressed torch module to ONNX (opset {opset}) failed: {error}"
        ) from error

    exported = (
        onnx.load(str(target)) if isinstance(target, Path) else onnx.load_from_string(target.getvalue())
    )
    for entry in reference.metadata_props:
        exported.metadata_props.add().CopyFrom(entry)
    return exported


def example_inputs(reference: onnx.ModelProto, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Build one example tensor per input of `reference`: normal noise for floats, zeros otherwise."""
    import torch

    generator = np.random.default_rng(seed)
    tensors = []
    for value in _graph_inputs(reference):
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            raise CompressionError(
                f"model input '{value.name}' declares no shape, so no example input can be built to "
                "export the compressed model; give the input a shape (the batch axis may stay symbolic)"
            )
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        shape = [_example_size(dim, axis) for axis, dim in enumerate(tensor_type.shape.dim)]
        if np.issubdtype(dtype, np.floating):
            array = generator.standard_normal(shape).astype(dtype)
        else:
            array = np.zeros(shape, dtype=dtype)
        tensors.append(torch.from_numpy(array))
    return tuple(tensors)


def dynamic_axes(reference: onnx.ModelProto) -> dict[str, dict[int, str]]:
    """Map each input and output of `reference` to its symbolic axes and their names."""
    axes: dict[str, dict[int, str]] = {}
    for value in [*_graph_inputs(reference), *reference.graph.output]:
        symbolic = {
            axis: dim.dim_param or ("batch" if axis == 0 else f"{value.name}_dim{axis}")
            for axis, dim in enumerate(value.type.tensor_type.shape.dim)
            if not dim.HasField("dim_value")
        }
        if symbolic:
            axes[value.name] = symbolic
    return axes


def export_opset(reference: onnx.ModelProto) -> int:
    """Return the default-domain opset of `reference`, clamped to what the TorchScript exporter supports."""
    from torch.onnx import _constants

    lowest = getattr(_constants, "ONNX_MIN_OPSET", FALLBACK_MIN_OPSET)
    highest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", FALLBACK_MAX_OPSET)
    versions = [entry.version for entry in reference.opset_import if _domain(entry.domain) == ""]
    if not versions:
        return highest
    opset = min(max(versions[0], lowest), highest)
    if opset != versions[0]:
        logger.info(
            "exporting with opset %s; the model uses opset %s, outside torch's range", opset, versions[0]
        )
    return opset


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializer_names = {tensor.name for tensor in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializer_names]


def _example_size(dim: Any, axis: int) -> int:
    if dim.HasField("dim_value") and dim.dim_value > 0:
        return dim.dim_value
    # NOTE: a symbolic dimension other than the batch gets a fixed example size of 32. A model that
    # needs another size there (a larger minimum image size, say) fails to export with CompressionError.
    return EXAMPLE_BATCH_SIZE if axis == 0 else EXAMPLE_SYMBOLIC_SIZE


def _domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from _all_nodes(subgraph)


def weight_layers(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """Return the Linear and convolution layers of `module` with their qualified names, in order."""
    import torch

    kinds = (torch.nn.Linear, torch.nn.modules.conv._ConvNd)
    return [(name, layer) for name, layer in module.named_modules() if isinstance(layer, kinds)]


def export_checked(
    module: torch.nn.Module, reference: onnx.ModelProto, work_dir: Path, method: str
) -> onnx.ModelProto:
    """Export `module` through a file under `work_dir` and run the checks of every compressed model."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix=f"{method}-") as folder:
        exported = torch_to_onnx(module, reference, Path(folder) / "model.onnx")
    check_compressed_model(exported, reference, method)
    return exported
