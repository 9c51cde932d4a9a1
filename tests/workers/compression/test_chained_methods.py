"""Methods applied in sequence, and the rule that a method never changes its input model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.workers.compression.helpers import agreement, compress, run
from workers.compression.stats import count_parameters


def test_prune_then_quantize_static(mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows
    context = make_context(calibration={"features": features})

    pruned = compress(mlp_model, "prune", context, scope="global", sparsity=0.5)
    quantized = compress(pruned, "quantize_static", context)

    assert "DequantizeLinear" in {node.op_type for node in quantized.graph.node}
    outputs = run(quantized, {"features": features})
    assert outputs.shape == (len(features), 3)
    assert outputs.dtype == np.float32
    assert agreement(outputs, run(pruned, {"features": features})) >= 0.95
    # Symmetric int8 weights map 0.0 to 0, so the pruned zeros stay zero.
    assert count_parameters(quantized)[1] <= count_parameters(pruned)[1]


def test_low_rank_then_prune(mlp_model, make_context):
    factorized = compress(mlp_model, "low_rank", make_context(), rank_ratio=0.5)

    pruned = compress(factorized, "prune", make_context(), scope="global", sparsity=0.5)

    total, nonzero = count_parameters(pruned)
    assert total == count_parameters(factorized)[0]
    assert nonzero < 0.6 * total


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("quantize_dynamic", {}),
        ("quantize_static", {}),
        ("fp16", {}),
        ("prune", {"scope": "global", "sparsity": 0.5}),
        ("prune_structured", {"ratio": 0.5}),
        ("low_rank", {"rank_ratio": 0.5}),
    ],
)
def test_input_model_unchanged(method, options, mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows
    before = mlp_model.SerializeToString()

    compress(mlp_model, method, make_context(calibration={"features": features}), **options)

    assert mlp_model.SerializeToString() == before
