"""count_parameters on float, pruned and quantized models."""

from __future__ import annotations

import onnx

from tests.workers.compression.helpers import compress
from workers.compression.stats import count_parameters

# 20 * 32 + 32 weights and biases in the hidden layer, 32 * 3 + 3 in the output layer.
MLP_PARAMETERS = 771


def test_float_mlp_count(mlp_model):
    assert count_parameters(mlp_model) == (MLP_PARAMETERS, MLP_PARAMETERS)


def test_fp16_count_unchanged(mlp_model, make_context):
    converted = compress(mlp_model, "fp16", make_context())

    assert count_parameters(converted)[0] == MLP_PARAMETERS


def test_pruned_nonzero_count(mlp_model, make_context):
    pruned = compress(mlp_model, "prune", make_context(), scope="global", sparsity=0.5)

    total, nonzero = count_parameters(pruned)
    assert total == MLP_PARAMETERS
    # 368 of the 736 weights are zero; the 35 biases are not pruned.
    assert nonzero == MLP_PARAMETERS - 368


def test_dynamic_quantized_count(mlp_model, make_context):
    quantized = compress(mlp_model, "quantize_dynamic", make_context())

    assert count_parameters(quantized)[0] == MLP_PARAMETERS


def test_static_quantized_count(mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows

    quantized = compress(mlp_model, "quantize_static", make_context(calibration={"features": features}))

    assert count_parameters(quantized)[0] == MLP_PARAMETERS


def test_scales_are_not_parameters(mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows
    quantized = compress(
        mlp_model, "quantize_static", make_context(calibration={"features": features}), per_channel=True
    )

    float_values = sum(
        onnx.numpy_helper.to_array(tensor).size
        for tensor in quantized.graph.initializer
        if tensor.data_type == onnx.TensorProto.FLOAT
    )

    assert float_values > 0
    assert count_parameters(quantized)[0] == MLP_PARAMETERS
