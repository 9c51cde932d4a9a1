"""Loading and validating ONNX models, external data included."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.utils.models import export_mlp
from workers.onnx_model import ModelError, describe_model, load_model


def linear_model(weight: np.ndarray, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", weight.shape[1]])],
        initializer=[numpy_helper.from_array(weight.astype(np.float32), "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_describe_exported_mlp(tmp_path):
    path = export_mlp(tmp_path / "mlp.onnx", n_features=4, hidden=8)
    description = describe_model(path)
    assert description["opset"] == 17
    assert description["inputs"][0]["name"] == "input"
    assert description["inputs"][0]["shape"] == ["batch", 4]
    assert description["parameters"] == 4 * 8 + 8 + 8 * 2 + 2
    assert len(description["sha256"]) == 64


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x80\x04 this is a pickle, not protobuf")
    with pytest.raises(ModelError, match="cannot read .* as an ONNX model"):
        load_model(path)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        load_model(tmp_path / "absent.onnx")


def test_checker_failure_reported(tmp_path):
    model = linear_model(np.ones((3, 2)))
    model.graph.node[0].input[1] = "undefined_tensor"
    path = tmp_path / "broken.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(ModelError, match="fails onnx.checker"):
        load_model(path)


def test_old_opset_rejected(tmp_path):
    path = tmp_path / "old.onnx"
    onnx.save_model(linear_model(np.ones((3, 2)), opset=6), str(path))
    with pytest.raises(ModelError, match="uses opset 6 .* supported opsets are 7 to"):
        load_model(path)


def test_external_data_inside_folder(tmp_path):
    path = tmp_path / "external.onnx"
    model = linear_model(np.arange(6.0).reshape(3, 2))
    onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    loaded = load_model(path)
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), np.arange(6.0).reshape(3, 2))


def test_external_data_outside_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.zeros(6, dtype=np.float32).tobytes())
    model = linear_model(np.ones((3, 2)))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "24")):
        entry = tensor.external_data.add()
        entry.key = key
        entry.value = value
    path = folder / "escape.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(ModelError, match="external data location '../secret.bin' outside the model's folder"):
        load_model(path)


def test_external_data_file_missing(tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save_model(
        linear_model(np.ones((3, 2))), str(path), save_as_external_data=True, location="weights.bin", size_threshold=0
    )
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelError, match="external data file 'weights.bin', which is missing"):
        load_model(path)
