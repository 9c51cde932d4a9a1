"""fp16: float16 weights with float32 inputs and outputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.workers.compression.helpers import agreement, compress, run
from workers.compression import CompressionError


def test_fp16_mlp_keeps_float32_io(mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows

    converted = compress(mlp_model, "fp16", make_context())

    onnx.checker.check_model(converted, full_check=True)
    assert converted.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert converted.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert onnx.TensorProto.FLOAT16 in {tensor.data_type for tensor in converted.graph.initializer}
    assert onnx.TensorProto.FLOAT not in {tensor.data_type for tensor in converted.graph.initializer}
    outputs = run(converted, {"features": features})
    assert outputs.dtype == np.float32
    assert outputs.shape == (len(features), 3)
    assert agreement(outputs, run(mlp_model, {"features": features})) >= 0.98


def test_fp16_conv_net_close(conv_model, image_rows, make_context):
    images, _ = image_rows

    converted = compress(conv_model, "fp16", make_context())

    outputs = run(converted, {"image": images})
    base = run(conv_model, {"image": images})
    assert outputs.dtype == np.float32
    assert np.abs(outputs - base).max() < 0.05
    assert agreement(outputs, base) >= 0.98


def test_fp16_twice_raises(mlp_model, make_context):
    converted = compress(mlp_model, "fp16", make_context())

    with pytest.raises(CompressionError, match="no float32 weights"):
        compress(converted, "fp16", make_context())
