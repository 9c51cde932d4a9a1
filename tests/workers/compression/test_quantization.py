"""quantize_dynamic and quantize_static on a trained MLP and a trained conv net."""

from __future__ import annotations

import onnx
import pytest

from tests.workers.compression.helpers import agreement, compress, run
from workers.compression import CompressionError


def initializer_types(model: onnx.ModelProto) -> set[int]:
    return {tensor.data_type for tensor in model.graph.initializer}


def test_dynamic_int8_mlp_agrees(mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows

    quantized = compress(mlp_model, "quantize_dynamic", make_context())

    onnx.checker.check_model(quantized, full_check=True)
    outputs = run(quantized, {"features": features})
    assert outputs.shape == (len(features), 3)
    assert outputs.dtype == "float32"
    assert "MatMulInteger" in {node.op_type for node in quantized.graph.node}
    assert onnx.TensorProto.INT8 in initializer_types(quantized)
    assert agreement(outputs, run(mlp_model, {"features": features})) >= 0.95


def test_dynamic_uint8_weights(mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows

    quantized = compress(mlp_model, "quantize_dynamic", make_context(), weight_type="uint8", per_channel=True)

    assert onnx.TensorProto.UINT8 in initializer_types(quantized)
    assert agreement(run(quantized, {"features": features}), run(mlp_model, {"features": features})) >= 0.95


def test_dynamic_conv_net_runs(conv_model, image_rows, make_context):
    # ONNX Runtime 1.32's CPU provider has a ConvInteger kernel for these weights, so the conv net
    # quantizes and runs. A version without that kernel makes quantize_dynamic raise CompressionError.
    images, _ = image_rows

    quantized = compress(conv_model, "quantize_dynamic", make_context())

    assert "ConvInteger" in {node.op_type for node in quantized.graph.node}
    outputs = run(quantized, {"image": images})
    assert outputs.shape == (len(images), 3)
    assert agreement(outputs, run(conv_model, {"image": images})) >= 0.9


@pytest.mark.parametrize("calibration", ["minmax", "entropy", "percentile"])
def test_static_calibration_methods_agree(calibration, mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows
    context = make_context(calibration={"features": features})

    quantized = compress(mlp_model, "quantize_static", context, calibration=calibration, samples=256)

    onnx.checker.check_model(quantized, full_check=True)
    operators = {node.op_type for node in quantized.graph.node}
    assert "QuantizeLinear" in operators
    assert "DequantizeLinear" in operators
    assert onnx.TensorProto.INT8 in initializer_types(quantized)
    outputs = run(quantized, {"features": features})
    assert outputs.shape == (len(features), 3)
    assert outputs.dtype == "float32"
    assert agreement(outputs, run(mlp_model, {"features": features})) >= 0.95


def test_static_conv_net_per_channel(conv_model, image_rows, make_context):
    images, _ = image_rows
    context = make_context(calibration={"image": images})

    quantized = compress(conv_model, "quantize_static", context, per_channel=True)

    weight_scales = [
        onnx.numpy_helper.to_array(tensor)
        for tensor in quantized.graph.initializer
        if tensor.name.endswith("weight_scale")
    ]
    assert any(scale.size > 1 for scale in weight_scales)
    outputs = run(quantized, {"image": images})
    assert outputs.shape == (len(images), 3)
    assert agreement(outputs, run(conv_model, {"image": images})) >= 0.9


def test_static_uses_requested_samples(mlp_model, tabular_rows, make_context, messages):
    features, _ = tabular_rows

    compress(mlp_model, "quantize_static", make_context(calibration={"features": features}), samples=100)

    assert any("on 100 training rows" in message for message in messages)


def test_static_without_calibration_raises(mlp_model, make_context):
    with pytest.raises(CompressionError, match="quantize_static needs data.training for calibration"):
        compress(mlp_model, "quantize_static", make_context(calibration=None))


def test_static_calibration_missing_input(mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows

    with pytest.raises(CompressionError, match="no rows for model input\\(s\\) features"):
        compress(mlp_model, "quantize_static", make_context(calibration={"age": features}))
