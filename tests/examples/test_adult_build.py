"""End-to-end checks of examples/adult/build.py: it runs the real script into a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest

from workers.spec import load_spec_file

pytestmark = pytest.mark.slow

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "adult" / "build.py"
OUTPUT_FILES = ["adult-train.csv", "adult-eval.csv", "adult-mlp.onnx", "feature_names.json", "spec.yaml"]
SENSITIVE = ["sex", "race"]
SEXES = {"Female", "Male"}
RACES = {"White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"}
NUMERIC_FEATURES = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]


def run_build(out: Path, seed: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--out", str(out), "--seed", str(seed)],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adult")
    run_build(out)
    return out


@pytest.fixture(scope="module")
def feature_names(build_dir: Path) -> list[str]:
    return json.loads((build_dir / "feature_names.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def train_table(build_dir: Path) -> pd.DataFrame:
    return pd.read_csv(build_dir / "adult-train.csv")


@pytest.fixture(scope="module")
def eval_table(build_dir: Path) -> pd.DataFrame:
    return pd.read_csv(build_dir / "adult-eval.csv")


@pytest.fixture(scope="module")
def eval_logits(build_dir: Path, eval_table: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    model_path = build_dir / "adult-mlp.onnx"
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    inputs = eval_table[feature_names].to_numpy(dtype=np.float32)
    (logits,) = session.run(["logits"], {"features": inputs})
    return logits


@pytest.mark.parametrize("name", OUTPUT_FILES)
def test_build_writes_output_file(build_dir: Path, name: str) -> None:
    assert (build_dir / name).is_file()


def test_onnx_model_passes_checker(build_dir: Path) -> None:
    onnx.checker.check_model(onnx.load(str(build_dir / "adult-mlp.onnx")), full_check=True)


def test_onnx_model_interface(build_dir: Path, feature_names: list[str]) -> None:
    model = onnx.load(str(build_dir / "adult-mlp.onnx"))
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    input_dims = graph_input.type.tensor_type.shape.dim
    output_dims = graph_output.type.tensor_type.shape.dim

    assert model.opset_import[0].version == 17
    assert graph_input.name == "features"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert input_dims[0].dim_param == "batch"
    assert input_dims[1].dim_value == len(feature_names)
    assert graph_output.name == "logits"
    assert output_dims[0].dim_param == "batch"
    assert output_dims[1].dim_value == 2


def test_onnx_logits_shape_on_eval(eval_logits: np.ndarray, eval_table: pd.DataFrame) -> None:
    assert eval_logits.shape == (len(eval_table), 2)


def test_onnx_accuracy_at_least_084(eval_logits: np.ndarray, eval_table: pd.DataFrame) -> None:
    predicted = np.where(eval_logits.argmax(axis=1) == 1, ">50K", "<=50K")
    accuracy = float((predicted == eval_table["income"].to_numpy()).mean())
    assert accuracy >= 0.84, f"accuracy {accuracy:.4f} on adult.test is below 0.84"


def test_eval_table_row_count(eval_table: pd.DataFrame) -> None:
    assert len(eval_table) == 16_281


def test_train_table_row_count(train_table: pd.DataFrame) -> None:
    assert len(train_table) == 32_561


def test_eval_table_has_no_nan(eval_table: pd.DataFrame) -> None:
    missing = eval_table.columns[eval_table.isna().any()].tolist()
    assert missing == []


def test_train_table_has_no_nan(train_table: pd.DataFrame) -> None:
    missing = train_table.columns[train_table.isna().any()].tolist()
    assert missing == []


@pytest.mark.parametrize(("column", "values"), [("sex", SEXES), ("race", RACES)])
def test_sensitive_column_keeps_text_values(eval_table: pd.DataFrame, column: str, values: set[str]) -> None:
    assert set(eval_table[column]) == values


def test_eval_labels_lose_trailing_period(eval_table: pd.DataFrame) -> None:
    assert set(eval_table["income"]) == {">50K", "<=50K"}


def test_train_and_eval_features_match(
    train_table: pd.DataFrame, eval_table: pd.DataFrame, feature_names: list[str]
) -> None:
    n_features = len(feature_names)
    assert train_table.columns[:n_features].tolist() == feature_names
    assert eval_table.columns[:n_features].tolist() == feature_names


def test_features_exclude_sensitive_columns(feature_names: list[str]) -> None:
    derived = [name for name in feature_names if name.split("=")[0] in SENSITIVE]
    assert derived == []


@pytest.mark.parametrize("column", NUMERIC_FEATURES)
def test_numeric_feature_standardized_on_train(train_table: pd.DataFrame, column: str) -> None:
    values = train_table[column].to_numpy()
    assert abs(values.mean()) < 1e-4
    assert abs(values.std() - 1.0) < 1e-4


def test_one_hot_columns_are_binary(eval_table: pd.DataFrame, feature_names: list[str]) -> None:
    one_hot = [name for name in feature_names if "=" in name]
    values = set(np.unique(eval_table[one_hot].to_numpy()).tolist())
    assert values <= {0, 1}


def test_spec_matches_built_files(build_dir: Path, feature_names: list[str]) -> None:
    spec = load_spec_file(build_dir / "spec.yaml")

    assert (build_dir / spec.model).is_file()
    assert (build_dir / spec.data.evaluation).is_file()
    assert spec.data.training is not None
    assert (build_dir / spec.data.training).is_file()
    assert spec.data.label == "income"
    assert spec.data.positive_label == ">50K"
    assert spec.data.sensitive == SENSITIVE
    assert spec.data.features == feature_names
    assert spec.recipes is None


def test_build_same_seed_same_bytes(build_dir: Path, tmp_path: Path) -> None:
    run_build(tmp_path, seed=0)
    for name in OUTPUT_FILES:
        rebuilt = (tmp_path / name).read_bytes()
        assert rebuilt == (build_dir / name).read_bytes(), f"{name} differs between two builds with seed 0"
