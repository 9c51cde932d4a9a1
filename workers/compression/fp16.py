"""Half precision: float16 weights and computation, with the model's inputs and outputs kept float32.

The conversion is ONNX Runtime's `onnxruntime.transformers.float16.convert_float_to_float16` with
`keep_io_types=True`, which inserts Cast nodes at the graph boundary, keeps the operators on its
default block list in float32 and clips weights to the float16 range. It appends the new Cast nodes
at the end of the graph, so the nodes are put back in topological order afterwards.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from typing import TYPE_CHECKING

import numpy as np

from workers.compression.base import CompressionContext, CompressionError, Method, MethodConfig

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

FLOAT16_MAX = float(np.finfo(np.float16).max)


class Config(MethodConfig):
    """Options of the fp16 method: it takes none."""


def apply(model: onnx.ModelProto, config: Config, context: CompressionContext) -> onnx.ModelProto:
    """Convert the float32 weights and computation of `model` to float16, keeping float32 input and output."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from workers.compression.verify import check_compressed_model

    float_weights = [
        tensor for tensor in model.graph.initializer if tensor.data_type == onnx.TensorProto.FLOAT
    ]
    if not float_weights:
        raise CompressionError(
            "fp16 found no float32 weights to convert; the model is already float16 or quantized"
        )
    _log_out_of_range(float_weights, context)

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        converted = convert_float_to_float16(copy, keep_io_types=True)
    except (ValueError, AssertionError, KeyError, onnx.shape_inference.InferenceError) as error:
        raise CompressionError(f"float16 conversion failed: {error}") from error

    _sort_nodes(converted.graph)
    check_compressed_model(converted, model, "fp16")
    return converted


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Reorder the nodes of `graph` topologically in place, keeping the existing order where it is valid."""
    import onnx

    produced_by = {output: index for index, node in enumerate(graph.node) for output in node.output if output}
    dependents: dict[int, list[int]] = defaultdict(list)
    waiting_on = [0] * len(graph.node)
    for index, node in enumerate(graph.node):
        producers = {produced_by[name] for name in _node_reads(node) if name in produced_by}
        producers.discard(index)
        waiting_on[index] = len(producers)
        for producer in producers:
            dependents[producer].append(index)

    ready = deque(index for index, count in enumerate(waiting_on) if count == 0)
    order: list[int] = []
    while ready:
        index = ready.popleft()
        order.append(index)
        for dependent in sorted(dependents[index]):
            waiting_on[dependent] -= 1
            if waiting_on[dependent] == 0:
                ready.append(dependent)
    if len(order) != len(graph.node):
        raise CompressionError("float16 conversion produced a graph with a cycle")

    nodes = [graph.node[index] for index in order]
    sorted_copy = [onnx.NodeProto() for _ in nodes]
    for target, node in zip(sorted_copy, nodes, strict=True):
        target.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(sorted_copy)


def _node_reads(node: onnx.NodeProto) -> set[str]:
    """Return the names `node` reads, including the outer-scope names its subgraphs read."""
    import onnx

    names = {name for name in node.input if name}
    for attribute in node.attribute:
        subgraphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
        for subgraph in subgraphs:
            for inner in subgraph.node:
                names |= _node_reads(inner)
    return names


def _log_out_of_range(weights: list[onnx.TensorProto], context: CompressionContext) -> None:
    from onnx import numpy_helper

    clipped = sum(
        int(np.count_nonzero(np.abs(numpy_helper.to_array(tensor)) > FLOAT16_MAX)) for tensor in weights
    )
    if clipped:
        message = (
            f"fp16: {clipped} weight value(s) exceed the float16 maximum {FLOAT16_MAX:g} and are clipped"
        )
        logger.warning("%s", message)
        context.log(message)


METHOD = Method(
    name="fp16",
    config_model=Config,
    apply=apply,
    summary="float16 weights and computation with float32 inputs and outputs",
)
