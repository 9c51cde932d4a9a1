"""ONNX <-> torch conversion shared by prune, prune_structured and low_rank."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.workers.compression.helpers import compress, export_module, run
from workers.compression import CompressionError
from workers.compression.convert import export_opset, onnx_to_torch, torch_to_onnx, unsupported_operators


@pytest.fixture(scope="module")
def shrink_model() -> onnx.ModelProto:
    """MatMul followed by Shrink, an operator onnx2torch 1.5 has no converter for."""
    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32), "weight"
    )
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "weight"], ["hidden"]),
            helper.make_node("Shrink", ["hidden"], ["logits"], lambd=0.5),
        ],
        "shrink",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture(scope="module")
def two_input_model() -> onnx.ModelProto:
    """A model with named inputs 'numeric' (3 columns) and 'encoded' (5 columns)."""
    import torch

    class TwoInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.numeric = torch.nn.Linear(3, 8)
            self.encoded = torch.nn.Linear(5, 8)
            self.head = torch.nn.Linear(16, 2)

        def forward(self, numeric, encoded):
            hidden = torch.cat([self.numeric(numeric), self.encoded(encoded)], dim=1)
            return self.head(torch.relu(hidden))

    torch.manual_seed(0)
    return export_module(TwoInputs(), (torch.randn(2, 3), torch.randn(2, 5)), ["numeric", "encoded"])


def test_shrink_runs_in_onnxruntime(shrink_model):
    outputs = run(shrink_model, {"features": np.ones((2, 4), dtype=np.float32)})

    assert outputs.shape == (2, 8)


def test_unsupported_operator_listed(shrink_model):
    assert unsupported_operators(shrink_model) == ["Shrink (opset 17)"]


@pytest.mark.parametrize(
    ("method", "options"),
    [("prune", {"sparsity": 0.5}), ("prune_structured", {"ratio": 0.5}), ("low_rank", {"rank_ratio": 0.5})],
)
def test_unsupported_operator_names_op(method, options, shrink_model, make_context):
    with pytest.raises(CompressionError) as raised:
        compress(shrink_model, method, make_context(), **options)

    assert "Shrink" in str(raised.value)
    assert "quantize_static" in str(raised.value)


def test_onnx_only_methods_handle_shrink(shrink_model, make_context):
    converted = compress(shrink_model, "fp16", make_context())

    assert run(converted, {"features": np.ones((3, 4), dtype=np.float32)}).shape == (3, 8)


def test_round_trip_matches_outputs(mlp_model, tabular_rows):
    features, _ = tabular_rows

    exported = torch_to_onnx(onnx_to_torch(mlp_model), mlp_model)

    assert [value.name for value in exported.graph.input] == ["features"]
    assert [value.name for value in exported.graph.output] == ["logits"]
    np.testing.assert_allclose(
        run(exported, {"features": features}), run(mlp_model, {"features": features}), rtol=1e-5, atol=1e-5
    )


def test_round_trip_writes_path(mlp_model, tmp_path):
    path = tmp_path / "exported.onnx"

    exported = torch_to_onnx(onnx_to_torch(mlp_model), mlp_model, path)

    assert path.exists()
    assert exported.graph.output[0].name == "logits"


def test_matmul_weight_becomes_linear(shrink_model):
    import torch

    weight = numpy_helper.to_array(shrink_model.graph.initializer[0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "weight"], ["logits"])],
        "matmul",
        list(shrink_model.graph.input),
        list(shrink_model.graph.output),
        [numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    module = onnx_to_torch(model)

    linears = [layer for layer in module.modules() if isinstance(layer, torch.nn.Linear)]
    assert len(linears) == 1
    features = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        outputs = module(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(outputs, features @ weight, rtol=1e-5, atol=1e-5)


def test_named_inputs_survive_pruning(two_input_model, make_context):
    generator = np.random.default_rng(0)
    feeds = {
        "numeric": generator.standard_normal((7, 3)).astype(np.float32),
        "encoded": generator.standard_normal((7, 5)).astype(np.float32),
    }

    pruned = compress(two_input_model, "prune", make_context(), scope="global", sparsity=0.5)

    assert [value.name for value in pruned.graph.input] == ["numeric", "encoded"]
    assert run(pruned, feeds).shape == (7, 2)


def test_fixed_batch_stays_fixed(make_context):
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2)).eval()
    model = _export_fixed_batch(module)

    pruned = compress(model, "prune", make_context(), scope="local", sparsity=0.5)

    dims = pruned.graph.input[0].type.tensor_type.shape.dim
    assert [dim.dim_value for dim in dims] == [1, 4]


def test_export_opset_clamped(mlp_model):
    model = onnx.ModelProto()
    model.CopyFrom(mlp_model)
    model.opset_import[0].version = 99

    # The TorchScript exporter of torch 2.14 writes opsets up to 20.
    assert export_opset(model) == 20
    assert export_opset(mlp_model) == 17


def _export_fixed_batch(module) -> onnx.ModelProto:
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(
        module, (torch.randn(1, 4),), buffer, input_names=["features"], output_names=["logits"], dynamo=False
    )
    return onnx.load_from_string(buffer.getvalue())
