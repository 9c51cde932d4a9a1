"""prune_structured: whole neurons and channels removed with torch-pruning."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.workers.compression.helpers import compress, export_module, run
from workers.compression import CompressionError
from workers.compression.stats import count_parameters


def test_structured_mlp_fewer_parameters(mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows

    pruned = compress(mlp_model, "prune_structured", make_context(), ratio=0.5)

    onnx.checker.check_model(pruned, full_check=True)
    assert count_parameters(pruned)[0] < count_parameters(mlp_model)[0]
    hidden_weight = onnx.numpy_helper.to_array(pruned.graph.initializer[0])
    assert hidden_weight.shape == (16, 20)
    outputs = run(pruned, {"features": features})
    assert outputs.shape == (len(features), 3)
    assert outputs.dtype == np.float32


def test_structured_conv_net_fewer_parameters(conv_model, image_rows, make_context):
    images, _ = image_rows

    pruned = compress(conv_model, "prune_structured", make_context(), ratio=0.25)

    assert count_parameters(pruned)[0] < count_parameters(conv_model)[0]
    first_conv = onnx.numpy_helper.to_array(pruned.graph.initializer[0])
    assert first_conv.shape == (6, 1, 3, 3)
    outputs = run(pruned, {"image": images})
    assert outputs.shape == (len(images), 3)


def test_structured_single_layer_raises(make_context):
    import torch

    torch.manual_seed(0)
    model = export_module(torch.nn.Linear(4, 2), (torch.randn(2, 4),), ["features"])

    with pytest.raises(CompressionError, match="no hidden Linear or convolution layer"):
        compress(model, "prune_structured", make_context(), ratio=0.5)


def test_structured_batch_norm_mlp(make_context):
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
    )
    model = export_module(module, (torch.randn(2, 6),), ["features"], opset=13)
    assert "BatchNormalization" in {node.op_type for node in model.graph.node}

    pruned = compress(model, "prune_structured", make_context(), ratio=0.5)

    assert count_parameters(pruned)[0] < count_parameters(model)[0]
    features = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    assert run(pruned, {"features": features}).shape == (5, 2)
