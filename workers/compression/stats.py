"""Parameter counts of an ONNX model, for the report's `artifact.parameters` and `nonzero_parameters`.

A parameter is a weight or bias stored as an initializer of the main graph: float initializers
(float32, float16, float64, bfloat16) that compute nodes read, and the integer weights and biases
of quantized models (QDQ, dynamic quantization and QLinear operators). Quantization scales and
zero points, shapes and other integer constants are not parameters.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

logger = logging.getLogger(__name__)

FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
)

# Input slots of quantized weights and biases, per operator. Each maps to the slot of its zero
# point (None when the zero point is 0) and to the axis a per-channel zero point runs along, where
# a negative axis counts from the last.
QUANTIZED_DATA_SLOTS: dict[str, dict[int, tuple[int | None, int]]] = {
    "DequantizeLinear": {0: (2, 1)},
    "MatMulInteger": {1: (3, -1)},
    "ConvInteger": {1: (3, 0)},
    "QLinearMatMul": {3: (5, -1)},
    "QLinearConv": {3: (5, 0), 8: (None, 0)},
}

# Input slots that hold quantization scales and zero points, which are not parameters.
QUANTIZATION_PARAMETER_SLOTS: dict[str, frozenset[int]] = {
    "QuantizeLinear": frozenset({1, 2}),
    "DequantizeLinear": frozenset({1, 2}),
    "MatMulInteger": frozenset({2, 3}),
    "ConvInteger": frozenset({2, 3}),
    "QLinearMatMul": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearConv": frozenset({1, 2, 4, 5, 6, 7}),
}


def count_parameters(model: onnx.ModelProto) -> tuple[int, int]:
    """Count the parameters of `model` and how many of them are non-zero.

    A quantized weight counts as zero where it equals its zero point, so a pruned weight stays
    zero after quantization. Returns (parameters, nonzero_parameters).
    """
    # NOTE: only initializers of the main graph count, so weights held in Constant nodes or inside
    # If/Loop subgraphs are left out.
    graph = model.graph
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name:
                consumers[name].append((node, index))
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    scale_names = _dynamic_quantization_scales(graph)

    total = 0
    nonzero = 0
    for name, tensor in initializers.items():
        uses = consumers.get(name, [])
        if not uses:
            continue
        if tensor.data_type in FLOAT_TYPES:
            if name in scale_names or all(_is_quantization_parameter(node, index) for node, index in uses):
                continue
            values = numpy_helper.to_array(tensor)
            total += values.size
            nonzero += int(np.count_nonzero(values))
            continue

        slot = _quantized_data_slot(uses)
        if slot is None:
            continue
        node, zero_point_index, axis = slot
        values = numpy_helper.to_array(tensor)
        zero_point = _zero_point(node, zero_point_index, initializers)
        total += values.size
        nonzero += _count_not_equal(values, zero_point, axis, node)
    return total, nonzero


def _is_quantization_parameter(node: onnx.NodeProto, index: int) -> bool:
    return index in QUANTIZATION_PARAMETER_SLOTS.get(node.op_type, frozenset())


def _dynamic_quantization_scales(graph: onnx.GraphProto) -> set[str]:
    """Find the weight scales of dynamic quantization, which multiply the input's runtime scale."""
    runtime_scales = {node.output[1] for node in graph.node if node.op_type == "DynamicQuantizeLinear"}
    names: set[str] = set()
    for node in graph.node:
        if node.op_type == "Mul" and any(name in runtime_scales for name in node.input):
            names.update(name for name in node.input if name not in runtime_scales)
    return names


def _quantized_data_slot(
    uses: list[tuple[onnx.NodeProto, int]],
) -> tuple[onnx.NodeProto, int | None, int] | None:
    for node, index in uses:
        slots = QUANTIZED_DATA_SLOTS.get(node.op_type, {})
        if index in slots:
            zero_point_index, axis = slots[index]
            return node, zero_point_index, axis
    return None


def _zero_point(
    node: onnx.NodeProto, zero_point_index: int | None, initializers: dict[str, onnx.TensorProto]
) -> np.ndarray:
    if zero_point_index is None or zero_point_index >= len(node.input) or not node.input[zero_point_index]:
        return np.zeros(())
    tensor = initializers.get(node.input[zero_point_index])
    if tensor is None:
        logger.warning(
            "zero point %s of node %s is not an initializer; counting non-zero weights against 0",
            node.input[zero_point_index],
            node.name,
        )
        return np.zeros(())
    return numpy_helper.to_array(tensor)


def _count_not_equal(values: np.ndarray, zero_point: np.ndarray, axis: int, node: onnx.NodeProto) -> int:
    values = values.astype(np.int64)
    zero_point = zero_point.astype(np.int64)
    if zero_point.size > 1 and values.ndim > 0:
        for attribute in node.attribute:
            if attribute.name == "axis":
                axis = attribute.i
        if values.shape[axis] != zero_point.size:
            # Blocked quantization stores one zero point per block, which this count does not expand.
            logger.warning("zero points of node %s do not match axis %s; counting against 0", node.name, axis)
            return int(np.count_nonzero(values))
        shape = [1] * values.ndim
        shape[axis] = zero_point.size
        zero_point = zero_point.reshape(shape)
    return int(np.count_nonzero(values != zero_point))
