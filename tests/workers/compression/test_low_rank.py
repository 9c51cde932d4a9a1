"""low_rank: truncated SVD of Linear and convolution weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.workers.compression.helpers import compress, export_module, run
from workers.compression import CompressionError
from workers.compression.stats import count_parameters


@pytest.fixture(scope="module")
def low_rank_mlp() -> onnx.ModelProto:
    """An MLP (20 -> 32 -> 3) whose hidden weight is rank 4 plus small noise."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    with torch.no_grad():
        module[0].weight.copy_(torch.randn(32, 4) @ torch.randn(4, 20) / 4 + 1e-3 * torch.randn(32, 20))
    return export_module(module, (torch.randn(2, 20),), ["features"])


def test_rank_ratio_fewer_parameters(mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows

    factorized = compress(mlp_model, "low_rank", make_context(), rank_ratio=0.5)

    onnx.checker.check_model(factorized, full_check=True)
    assert count_parameters(factorized)[0] < count_parameters(mlp_model)[0]
    assert sum(node.op_type in ("Gemm", "MatMul") for node in factorized.graph.node) == 4
    outputs = run(factorized, {"features": features})
    assert outputs.shape == (len(features), 3)
    assert outputs.dtype == np.float32


def test_energy_keeps_outputs_close(low_rank_mlp, tabular_rows, make_context):
    features, _ = tabular_rows

    factorized = compress(low_rank_mlp, "low_rank", make_context(), energy=0.999)

    assert count_parameters(factorized)[0] < count_parameters(low_rank_mlp)[0]
    base = run(low_rank_mlp, {"features": features})
    outputs = run(factorized, {"features": features})
    assert np.abs(outputs - base).max() < 0.05 * np.abs(base).max()


def test_low_rank_conv_net(conv_model, image_rows, make_context, messages):
    images, _ = image_rows

    factorized = compress(conv_model, "low_rank", make_context(), rank_ratio=0.25)

    assert count_parameters(factorized)[0] < count_parameters(conv_model)[0]
    assert sum(node.op_type == "Conv" for node in factorized.graph.node) > 2
    outputs = run(factorized, {"image": images})
    assert outputs.shape == (len(images), 3)
    assert any("factorized" in message for message in messages)


def test_full_energy_raises(mlp_model, make_context):
    with pytest.raises(CompressionError, match="factorized no layer"):
        compress(mlp_model, "low_rank", make_context(), energy=1.0)


def test_skipped_layers_logged(mlp_model, make_context, messages):
    compress(mlp_model, "low_rank", make_context(), rank_ratio=0.8)

    assert any("low_rank skipped layer" in message for message in messages)
