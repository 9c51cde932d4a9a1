"""prune: unstructured magnitude pruning, local and global."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.workers.compression.helpers import agreement, compress, prunable_weights, run, weight_sparsities


def overall_sparsity(model: onnx.ModelProto) -> float:
    weights = prunable_weights(model)
    zeros = sum(int(np.sum(values == 0)) for values in weights)
    return zeros / sum(values.size for values in weights)


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
@pytest.mark.parametrize("scope", ["local", "global"])
def test_prune_mlp_total_sparsity(scope, sparsity, mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows

    pruned = compress(mlp_model, "prune", make_context(), scope=scope, sparsity=sparsity)

    onnx.checker.check_model(pruned, full_check=True)
    assert overall_sparsity(pruned) == pytest.approx(sparsity, abs=0.01)
    outputs = run(pruned, {"features": features})
    assert outputs.shape == (len(features), 3)
    assert outputs.dtype == np.float32


def test_local_prune_each_layer(mlp_model, make_context):
    pruned = compress(mlp_model, "prune", make_context(), scope="local", sparsity=0.5)

    sparsities = weight_sparsities(pruned)
    assert len(sparsities) == 2
    for name, sparsity in sparsities.items():
        assert sparsity == pytest.approx(0.5, abs=0.01), name


def test_global_prune_uneven_layers(mlp_model, make_context):
    pruned = compress(mlp_model, "prune", make_context(), scope="global", sparsity=0.5)

    sparsities = sorted(weight_sparsities(pruned).values())
    assert sparsities[-1] - sparsities[0] > 0.01


def test_prune_keeps_biases(mlp_model, make_context):
    pruned = compress(mlp_model, "prune", make_context(), scope="global", sparsity=0.9)

    biases = [
        onnx.numpy_helper.to_array(tensor) for tensor in pruned.graph.initializer if len(tensor.dims) == 1
    ]
    assert len(biases) == 2
    for bias in biases:
        assert np.count_nonzero(bias) == bias.size


def test_mild_prune_agrees(mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows

    pruned = compress(mlp_model, "prune", make_context(), scope="local", sparsity=0.3)

    assert agreement(run(pruned, {"features": features}), run(mlp_model, {"features": features})) >= 0.9


def test_prune_conv_net(conv_model, image_rows, make_context):
    images, _ = image_rows

    pruned = compress(conv_model, "prune", make_context(), scope="global", sparsity=0.3)

    assert overall_sparsity(pruned) == pytest.approx(0.3, abs=0.01)
    outputs = run(pruned, {"image": images})
    assert outputs.shape == (len(images), 3)
    assert agreement(outputs, run(conv_model, {"image": images})) >= 0.9


def test_prune_keeps_dynamic_batch(mlp_model, tabular_rows, make_context):
    features, _ = tabular_rows

    pruned = compress(mlp_model, "prune", make_context(), scope="global", sparsity=0.5)

    batch_dim = pruned.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    assert [value.name for value in pruned.graph.output] == ["logits"]
    assert run(pruned, {"features": features[:5]}).shape == (5, 3)
