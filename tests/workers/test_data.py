"""Tables, column roles and the errors bad input gets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.utils.models import make_table
from workers.data import DataError, InputSpec, describe_table, prepare_table, read_table
from workers.spec import DataSpec

FLOAT_INPUT = [InputSpec(name="input", dtype=np.dtype("float32"), shape=["batch", 4])]


def data_spec(**overrides: object) -> DataSpec:
    values = {"evaluation": "eval.csv", "label": "label", "sensitive": ["group"]}
    values.update(overrides)
    return DataSpec.model_validate(values)


def prepare(frame: pd.DataFrame, spec: DataSpec | None = None, inputs=FLOAT_INPUT, n_outputs: int = 2):
    return prepare_table(frame, spec or data_spec(), inputs, n_outputs, source="test table")


def test_prepare_binary_table():
    frame = make_table(50)
    prepared = prepare(frame)
    assert prepared.inputs["input"].shape == (50, 4)
    assert prepared.inputs["input"].dtype == np.float32
    assert prepared.feature_names == ["f0", "f1", "f2", "f3"]
    assert prepared.positive_class == 1
    np.testing.assert_array_equal(prepared.labels, frame["label"].to_numpy())
    codes, names = prepared.groups["group"]
    assert names == ["a", "b"]
    assert np.array_equal(np.array(names)[codes], frame["group"].to_numpy())


def test_positive_label_maps_text():
    frame = make_table(40, label_values=("<=50K", ">50K"))
    prepared = prepare(frame, data_spec(positive_label=">50K"))
    assert prepared.class_names == ["<=50K", ">50K"]
    np.testing.assert_array_equal(prepared.labels, (frame["label"] == ">50K").to_numpy().astype(int))


def test_positive_label_matches_numbers():
    frame = make_table(40, label_values=(1, 2))
    prepared = prepare(frame, data_spec(positive_label=2))
    np.testing.assert_array_equal(prepared.labels, (frame["label"] == 2).to_numpy().astype(int))


def test_missing_column_names_it():
    frame = make_table(20).drop(columns=["group"])
    with pytest.raises(DataError, match="sensitive column 'group' not found in test table; available: f0"):
        prepare(frame)


def test_missing_label_values_counted():
    frame = make_table(20).astype({"label": float})
    frame.loc[[1, 4, 7], "label"] = np.nan
    with pytest.raises(DataError, match="label column 'label' in test table has 3 missing values"):
        prepare(frame)


def test_missing_sensitive_values_counted():
    frame = make_table(20)
    frame.loc[[2, 3], "group"] = None
    with pytest.raises(DataError, match="sensitive column 'group' in test table has 2 missing values"):
        prepare(frame)


def test_missing_sensitive_as_group():
    frame = make_table(30)
    frame.loc[[2, 3], "group"] = None
    prepared = prepare(frame, data_spec(missing_sensitive="group"))
    codes, names = prepared.groups["group"]
    assert "missing" in names
    assert int(np.sum(codes == names.index("missing"))) == 2
    assert any("missing" in warning for warning in prepared.warnings)


def test_positive_label_absent():
    frame = make_table(20, label_values=("no", "yes"))
    with pytest.raises(DataError, match=r"positive label 'Yes' does not occur .* values found: no, yes"):
        prepare(frame, data_spec(positive_label="Yes"))


def test_text_labels_need_positive_label():
    frame = make_table(20, label_values=("no", "yes"))
    with pytest.raises(DataError, match="set data.positive_label"):
        prepare(frame)


def test_single_group_rejected():
    frame = make_table(20, groups=("only",))
    with pytest.raises(DataError, match="has a single group \\('only'\\)"):
        prepare(frame)


def test_feature_count_mismatch():
    frame = make_table(20, n_features=5)
    with pytest.raises(DataError, match="expects 4 features but test table gives 5"):
        prepare(frame)


def test_non_numeric_feature():
    frame = make_table(20)
    frame["f2"] = frame["f2"].astype(object)
    frame.loc[5, "f2"] = "high"
    with pytest.raises(DataError, match="feature column 'f2' in test table is not numeric \\(value 'high'\\)"):
        prepare(frame)


def test_missing_feature_values():
    frame = make_table(20)
    frame.loc[[0, 1], "f1"] = np.nan
    with pytest.raises(DataError, match="feature column 'f1' in test table has 2 missing values"):
        prepare(frame)


def test_features_select_and_order():
    frame = make_table(20, n_features=6)
    spec = data_spec(features=["f5", "f0", "f3", "f1"])
    prepared = prepare(frame, spec)
    np.testing.assert_allclose(prepared.inputs["input"][:, 0], frame["f5"].to_numpy(dtype=np.float32))
    assert prepared.feature_names == ["f5", "f0", "f3", "f1"]


def test_intersectional_groups():
    frame = make_table(200)
    frame["sex"] = np.where(np.arange(200) % 2 == 0, "F", "M")
    spec = data_spec(sensitive=["group", "sex"], features=["f0", "f1", "f2", "f3"])
    prepared = prepare(frame, spec)
    codes, names = prepared.groups["group&sex"]
    assert names == ["a&F", "a&M", "b&F", "b&M"]
    assert codes.shape == (200,)


def test_multiclass_labels_by_classes():
    frame = make_table(30)
    frame["label"] = np.array(["Low", "Medium", "High"])[np.arange(30) % 3]
    prepared = prepare(frame, data_spec(classes=["Low", "Medium", "High"]), n_outputs=3)
    assert prepared.positive_class is None
    np.testing.assert_array_equal(prepared.labels[:3], [0, 1, 2])


def test_multiclass_unknown_label():
    frame = make_table(30)
    frame["label"] = np.array(["Low", "Medium", "Huge"])[np.arange(30) % 3]
    with pytest.raises(DataError, match="not among the classes Low, Medium, High: Huge"):
        prepare(frame, data_spec(classes=["Low", "Medium", "High"]), n_outputs=3)


def test_csv_with_byte_order_mark(tmp_path):
    path = tmp_path / "bom.csv"
    make_table(10).to_csv(path, index=False, encoding="utf-8-sig")
    frame = read_table(path)
    assert list(frame.columns)[0] == "f0"


def test_csv_delimiter_option(tmp_path):
    path = tmp_path / "semicolon.csv"
    make_table(10).to_csv(path, index=False, sep=";")
    frame = read_table(path, delimiter=";")
    assert frame.shape == (10, 6)


def test_csv_wrong_delimiter_explained(tmp_path):
    path = tmp_path / "semicolon.csv"
    make_table(10).to_csv(path, index=False, sep=";")
    with pytest.raises(DataError, match="set data.delimiter to ';'"):
        read_table(path)


def test_csv_invalid_encoding(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("f0,group,label\n1.0,caf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.csv is not valid UTF-8"):
        read_table(path)


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot read broken.parquet as Parquet"):
        read_table(path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(DataError, match="extension '.xlsx'"):
        read_table(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        read_table(tmp_path / "absent.csv")


def test_parquet_round_trip(tmp_path):
    path = tmp_path / "table.parquet"
    make_table(25).to_parquet(path)
    description = describe_table(path)
    assert description["format"] == "parquet"
    assert description["rows"] == 25


def test_npz_tensor_input(tmp_path):
    path = tmp_path / "images.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        image=rng.normal(size=(12, 1, 4, 4)).astype(np.float32),
        label=np.arange(12) % 2,
        group=np.array(["x", "y"] * 6),
    )
    table = read_table(path)
    inputs = [InputSpec(name="image", dtype=np.dtype("float32"), shape=["batch", 1, 4, 4])]
    prepared = prepare_table(table, data_spec(), inputs, 2, source="images.npz")
    assert prepared.inputs["image"].shape == (12, 1, 4, 4)


def test_npz_object_array_rejected(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, label=np.array([{"a": 1}, {"b": 2}], dtype=object))
    with pytest.raises(DataError, match="object arrays"):
        read_table(path)


def test_npz_lengths_must_agree(tmp_path):
    path = tmp_path / "ragged.npz"
    np.savez(path, image=np.zeros((5, 3), dtype=np.float32), label=np.zeros(4))
    with pytest.raises(DataError, match="differ in their first dimension"):
        read_table(path)


def test_named_inputs_by_column():
    frame = make_table(20)
    inputs = [
        InputSpec(name="f0", dtype=np.dtype("float32"), shape=["batch", 1]),
        InputSpec(name="f1", dtype=np.dtype("float32"), shape=["batch", 1]),
    ]
    prepared = prepare(frame, inputs=inputs)
    assert set(prepared.inputs) == {"f0", "f1"}
    assert prepared.inputs["f0"].shape == (20, 1)


def test_named_input_missing():
    frame = make_table(20)
    inputs = [
        InputSpec(name="f0", dtype=np.dtype("float32"), shape=["batch", 1]),
        InputSpec(name="age", dtype=np.dtype("float32"), shape=["batch", 1]),
    ]
    with pytest.raises(DataError, match="model input 'age' has no column or array of that name"):
        prepare(frame, inputs=inputs)


def test_extra_label_values_warned():
    frame = make_table(30, label_values=("bad", "good"))
    frame.loc[3, "label"] = "unknown"
    prepared = prepare(frame, data_spec(positive_label="good"))
    assert prepared.class_names == ["not good", "good"]
    assert any("has 3 values (bad, good, unknown)" in warning for warning in prepared.warnings)


def test_continuous_sensitive_rejected():
    frame = make_table(200)
    frame["group"] = np.arange(200) % 40
    with pytest.raises(DataError, match="has 40 distinct values, more than data.max_groups \\(30\\)"):
        prepare(frame)


def test_sensitive_column_as_feature():
    frame = make_table(40)
    frame["age"] = np.arange(40) % 3
    spec = data_spec(sensitive=["age"], features=["f0", "f1", "f2", "age"])
    prepared = prepare(frame, spec)
    np.testing.assert_array_equal(prepared.inputs["input"][:, 3], (np.arange(40) % 3).astype(np.float32))


def test_label_as_feature_rejected():
    with pytest.raises(ValueError, match="column 'label' is the label and is also listed in features"):
        data_spec(features=["f0", "label"])


def test_mismatch_hints_sensitive_columns():
    frame = make_table(20, n_features=3)
    frame["age"] = np.arange(20) % 2
    with pytest.raises(DataError, match="sensitive columns \\(group, age\\) are not features unless data.features lists"):
        prepare(frame, data_spec(sensitive=["group", "age"]))
