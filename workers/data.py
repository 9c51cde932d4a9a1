"""Reading evaluation and training tables and turning them into model inputs, labels and groups.

Tables are CSV, Parquet, or NPZ with named arrays for tensor inputs. CSV files are UTF-8, with or
without a byte-order mark, and their delimiter is an option that is never guessed. NPZ files load with
`allow_pickle=False`, so object arrays are rejected rather than unpickled.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from workers.spec import DataSpec

logger = logging.getLogger(__name__)

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
NPZ_SUFFIXES = {".npz"}
MISSING_GROUP = "missing"
INTERSECTION_SEPARATOR = "&"

Table = Union[pd.DataFrame, dict[str, np.ndarray]]


class DataError(ValueError):
    """A table cannot be used as given; the message names the file, column or value and the fix."""


@dataclass
class InputSpec:
    """One model input as the data loader needs it."""

    name: str
    dtype: np.dtype
    shape: list[int | str | None] | None


@dataclass
class PreparedData:
    """Model inputs, label indices and group codes for one table."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    groups: dict[str, tuple[np.ndarray, list[str]]]
    class_names: list[str]
    positive_class: int | None
    feature_names: list[str]
    rows: int
    warnings: list[str] = field(default_factory=list)

    def take(self, index: np.ndarray) -> PreparedData:
        """Return the rows at `index` (used for calibration samples)."""
        return PreparedData(
            inputs={name: array[index] for name, array in self.inputs.items()},
            labels=self.labels[index],
            groups={name: (codes[index], names) for name, (codes, names) in self.groups.items()},
            class_names=self.class_names,
            positive_class=self.positive_class,
            feature_names=self.feature_names,
            rows=int(len(index)),
        )


# Reading


def table_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in NPZ_SUFFIXES:
        return "npz"
    raise DataError(
        f"cannot tell the format of {path.name}: the extension '{suffix}' is not one of "
        f"{', '.join(sorted(CSV_SUFFIXES | PARQUET_SUFFIXES | NPZ_SUFFIXES))}; rename the file"
    )


def read_table(path: Path, *, delimiter: str = ",") -> Table:
    """Read a CSV, Parquet or NPZ file; raise DataError with the file and the cause."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    kind = table_format(path)
    if kind == "csv":
        return _read_csv(path, delimiter)
    if kind == "parquet":
        return _read_parquet(path)
    return _read_npz(path)


def _read_csv(path: Path, delimiter: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep=delimiter, encoding="utf-8-sig", skipinitialspace=True, low_memory=False)
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path.name} is not valid UTF-8 (byte {error.object[error.start]:#04x} at offset {error.start}); "
            "re-save the file as UTF-8"
        ) from error
    except pd.errors.EmptyDataError as error:
        raise DataError(f"{path.name} is empty; it needs a header row and at least one data row") from error
    except pd.errors.ParserError as error:
        raise DataError(
            f"cannot parse {path.name} as CSV with delimiter {delimiter!r}: {error}; "
            "check data.delimiter"
        ) from error

    if frame.shape[1] == 1 and delimiter not in str(frame.columns[0]):
        header = str(frame.columns[0])
        for other in (";", "\t", "|", ","):
            if other != delimiter and other in header:
                raise DataError(
                    f"{path.name} has a single column '{header[:60]}' when split on {delimiter!r}; the header "
                    f"contains {other!r}, so set data.delimiter to {other!r}"
                )
    if frame.empty:
        raise DataError(f"{path.name} has a header but no data rows")
    frame.columns = [str(column).strip() for column in frame.columns]
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError and others
        raise DataError(f"cannot read {path.name} as Parquet: {error}") from error
    if frame.empty:
        raise DataError(f"{path.name} has no rows")
    frame.columns = [str(column) for column in frame.columns]
    return frame


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as error:
        raise DataError(
            f"{path.name} contains object arrays, which need pickle to load; store numeric or string arrays"
        ) from error
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"cannot read {path.name} as NPZ: {error}") from error
    if not arrays:
        raise DataError(f"{path.name} contains no arrays")

    lengths = {name: (array.shape[0] if array.ndim else 0) for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        listing = ", ".join(f"{name}: {length}" for name, length in lengths.items())
        raise DataError(f"arrays in {path.name} differ in their first dimension ({listing}); each must have one entry per row")
    return arrays


def describe_table(path: Path, *, delimiter: str = ",") -> dict[str, Any]:
    """Read a table and return its format, row count and columns with their types."""
    path = Path(path)
    table = read_table(path, delimiter=delimiter)
    kind = table_format(path)
    if isinstance(table, pd.DataFrame):
        columns = [{"name": name, "dtype": str(table[name].dtype)} for name in table.columns]
        rows = len(table)
    else:
        columns = [
            {"name": name, "dtype": str(array.dtype), "shape": list(array.shape[1:])} for name, array in table.items()
        ]
        rows = int(next(iter(table.values())).shape[0])
    return {"format": kind, "rows": rows, "columns": columns}


def column_names(table: Table) -> list[str]:
    return list(table.columns) if isinstance(table, pd.DataFrame) else list(table)


def get_column(table: Table, name: str, *, role: str, source: str) -> np.ndarray:
    names = column_names(table)
    if name not in names:
        shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
        raise DataError(f"{role} column '{name}' not found in {source}; available: {shown}")
    if isinstance(table, pd.DataFrame):
        return table[name].to_numpy()
    return table[name]


# Labels


def _missing_mask(values: np.ndarray) -> np.ndarray:
    return pd.isna(pd.Series(values)).to_numpy()


def _label_text(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    return str(value).strip()


def encode_labels(
    values: np.ndarray, data: DataSpec, n_outputs: int, *, source: str
) -> tuple[np.ndarray, list[str], int | None]:
    """Map raw labels to class indices; return (indices, class names, positive class index or None)."""
    missing = _missing_mask(values)
    if missing.any():
        raise DataError(
            f"label column '{data.label}' in {source} has {int(missing.sum())} missing values; "
            "drop or fill those rows"
        )
    texts = np.array([_label_text(value) for value in values], dtype=object)
    found = sorted(set(texts.tolist()))
    shown = ", ".join(found[:20]) + (", ..." if len(found) > 20 else "")

    if n_outputs > 2 or data.classes is not None:
        return _encode_multiclass(texts, data, n_outputs, found, shown, source)

    if data.positive_label is None:
        if not set(found) <= {"0", "1"}:
            raise DataError(
                f"label column '{data.label}' in {source} has values {shown}; set data.positive_label to the "
                "value of the positive class (labels other than 0/1 need it)"
            )
        positive = "1"
    else:
        positive = _label_text(data.positive_label)
        if positive not in found:
            raise DataError(
                f"positive label {data.positive_label!r} does not occur in label column '{data.label}' of "
                f"{source}; values found: {shown}"
            )
    indices = (texts == positive).astype(np.int64)
    negative_names = [value for value in found if value != positive]
    negative = negative_names[0] if len(negative_names) == 1 else f"not {positive}"
    return indices, [negative, positive], 1


def label_warnings(values: np.ndarray, data: DataSpec, class_names: list[str], *, source: str) -> list[str]:
    """Warn when a binary label column has more than two values, since the others all count as negative."""
    if len(class_names) != 2 or data.positive_label is None:
        return []
    found = sorted({_label_text(value) for value in values})
    if len(found) <= 2:
        return []
    return [
        f"label column '{data.label}' in {source} has {len(found)} values ({', '.join(found[:10])}); every value "
        f"other than {_label_text(data.positive_label)!r} counts as negative"
    ]


def _encode_multiclass(
    texts: np.ndarray, data: DataSpec, n_outputs: int, found: list[str], shown: str, source: str
) -> tuple[np.ndarray, list[str], None]:
    if data.classes is not None:
        classes = [_label_text(value) for value in data.classes]
        if len(classes) != n_outputs:
            raise DataError(
                f"data.classes lists {len(classes)} classes but the model has {n_outputs} outputs; "
                "list one label value per model output, in output order"
            )
    else:
        classes = [str(index) for index in range(n_outputs)]
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(
            f"label column '{data.label}' in {source} has values not among the classes "
            f"{', '.join(classes)}: {', '.join(unknown[:10])}; set data.classes to the label values in the "
            "order of the model's outputs"
        )
    lookup = {name: index for index, name in enumerate(classes)}
    indices = np.array([lookup[text] for text in texts], dtype=np.int64)
    return indices, classes, None


# Groups


def encode_groups(
    table: Table, data: DataSpec, *, source: str, intersectional: bool
) -> tuple[dict[str, tuple[np.ndarray, list[str]]], list[str]]:
    """Return {attribute: (group code per row, group names)} and warnings."""
    groups: dict[str, tuple[np.ndarray, list[str]]] = {}
    text_columns: dict[str, np.ndarray] = {}
    warnings: list[str] = []

    for name in data.sensitive:
        values = get_column(table, name, role="sensitive", source=source)
        if values.ndim != 1:
            raise DataError(f"sensitive array '{name}' in {source} has shape {values.shape}; it needs one value per row")
        missing = _missing_mask(values)
        if missing.any():
            if data.missing_sensitive == "error":
                raise DataError(
                    f"sensitive column '{name}' in {source} has {int(missing.sum())} missing values; fill them, "
                    f"or set data.missing_sensitive: group to put them in a group named '{MISSING_GROUP}'"
                )
            warnings.append(f"{name}: {int(missing.sum())} rows with a missing value form the group '{MISSING_GROUP}'")
        texts = np.array(
            [MISSING_GROUP if is_missing else _label_text(value) for value, is_missing in zip(values, missing)],
            dtype=object,
        )
        names, codes = np.unique(texts.astype(str), return_inverse=True)
        if len(names) > data.max_groups:
            raise DataError(
                f"sensitive column '{name}' in {source} has {len(names)} distinct values, more than "
                f"data.max_groups ({data.max_groups}); bin it into a few bands (for example age ranges), or raise "
                "data.max_groups if every value is a real group"
            )
        if len(names) < 2:
            raise DataError(
                f"sensitive column '{name}' in {source} has a single group ({str(names[0])!r}); a fairness audit "
                "needs at least two groups"
            )
        groups[name] = (codes.astype(np.int64), [str(value) for value in names])
        text_columns[name] = texts.astype(str)

    if intersectional and len(data.sensitive) > 1:
        joined = text_columns[data.sensitive[0]]
        for name in data.sensitive[1:]:
            joined = np.char.add(np.char.add(joined, INTERSECTION_SEPARATOR), text_columns[name])
        names, codes = np.unique(joined, return_inverse=True)
        groups[INTERSECTION_SEPARATOR.join(data.sensitive)] = (codes.astype(np.int64), [str(value) for value in names])
    return groups, warnings


# Features and model inputs


def default_features(table: Table, data: DataSpec) -> list[str]:
    reserved = {data.label, *data.sensitive}
    return [name for name in column_names(table) if name not in reserved]


def build_inputs(
    table: Table, data: DataSpec, model_inputs: list[InputSpec], *, source: str
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Build the arrays fed to the model; return (inputs by name, feature names used)."""
    names = column_names(table)
    if len(model_inputs) > 1 or (model_inputs[0].name in names and data.features is None):
        return _inputs_by_name(table, model_inputs, source=source)

    model_input = model_inputs[0]
    features = data.features if data.features is not None else default_features(table, data)
    if not features:
        raise DataError(f"{source} has no feature columns besides the label and sensitive columns")

    if isinstance(table, dict):
        if len(features) != 1:
            raise DataError(
                f"an NPZ table feeds a single-input model from one array; data.features lists {len(features)} "
                f"({', '.join(features)}); name the one array, or name the array '{model_input.name}'"
            )
        array = get_column(table, features[0], role="feature", source=source)
        return {model_input.name: _cast(array, model_input, features[0], source)}, features

    matrix = _stack_columns(table, features, source=source)
    expected = _feature_width(model_input)
    if expected is not None and matrix.shape[1] != expected:
        hint = ""
        if data.features is None and matrix.shape[1] < expected:
            hint = (
                f"; sensitive columns ({', '.join(data.sensitive)}) are not features unless data.features lists "
                "them"
            )
        raise DataError(
            f"model input '{model_input.name}' expects {expected} features but {source} gives {matrix.shape[1]} "
            f"({', '.join(features[:12])}{', ...' if len(features) > 12 else ''}); list the model's features "
            f"in data.features, in the order the model was trained on{hint}"
        )
    return {model_input.name: _cast(matrix, model_input, "features", source)}, features


def _stack_columns(frame: pd.DataFrame, features: list[str], *, source: str) -> np.ndarray:
    columns = []
    for name in features:
        values = get_column(frame, name, role="feature", source=source)
        if values.dtype == object or not np.issubdtype(values.dtype, np.number) and values.dtype != bool:
            numeric = pd.to_numeric(pd.Series(values), errors="coerce")
            bad = numeric.isna() & ~pd.isna(pd.Series(values))
            if bad.any():
                sample = values[bad.to_numpy()][0]
                raise DataError(
                    f"feature column '{name}' in {source} is not numeric (value {sample!r}); encode it as numbers "
                    "(for example one-hot columns) before the audit"
                )
            values = numeric.to_numpy()
        values = values.astype(np.float64)
        missing = int(np.isnan(values).sum())
        if missing:
            raise DataError(
                f"feature column '{name}' in {source} has {missing} missing values; impute them as the model's "
                "training pipeline does"
            )
        columns.append(values)
    return np.column_stack(columns)


def _inputs_by_name(table: Table, model_inputs: list[InputSpec], *, source: str) -> tuple[dict[str, np.ndarray], list[str]]:
    inputs = {}
    for model_input in model_inputs:
        if model_input.name not in column_names(table):
            raise DataError(
                f"model input '{model_input.name}' has no column or array of that name in {source}; a model "
                "with several inputs is fed by name"
            )
        if isinstance(table, pd.DataFrame):
            array = _stack_columns(table, [model_input.name], source=source)
            if model_input.shape is not None and len(model_input.shape) == 1:
                array = array[:, 0]
        else:
            array = table[model_input.name]
        inputs[model_input.name] = _cast(array, model_input, model_input.name, source)
    return inputs, [model_input.name for model_input in model_inputs]


def _feature_width(model_input: InputSpec) -> int | None:
    if model_input.shape is None or len(model_input.shape) != 2:
        return None
    width = model_input.shape[1]
    return width if isinstance(width, int) and width > 0 else None


def _cast(array: np.ndarray, model_input: InputSpec, name: str, source: str) -> np.ndarray:
    if array.dtype.kind in "OUS":
        raise DataError(f"array '{name}' in {source} contains text ({array.dtype}); the model input needs numbers")
    if np.issubdtype(model_input.dtype, np.integer) and np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise DataError(f"array '{name}' in {source} has fractional values but model input '{model_input.name}' takes integers")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise DataError(f"array '{name}' in {source} contains NaN or infinite values; clean them first")
    rank = len(model_input.shape) if model_input.shape is not None else None
    if rank is not None and array.ndim != rank:
        raise DataError(
            f"array '{name}' in {source} has {array.ndim} dimensions {tuple(array.shape)} but model input "
            f"'{model_input.name}' takes {rank} ({model_input.shape})"
        )
    return np.ascontiguousarray(array.astype(model_input.dtype, copy=False))


def prepare_table(
    table: Table,
    data: DataSpec,
    model_inputs: list[InputSpec],
    n_outputs: int,
    *,
    source: str,
    intersectional: bool = True,
) -> PreparedData:
    """Turn a table into model inputs, class indices and group codes, validating every role."""
    labels_raw = get_column(table, data.label, role="label", source=source)
    labels, class_names, positive_class = encode_labels(labels_raw, data, n_outputs, source=source)
    groups, warnings = encode_groups(table, data, source=source, intersectional=intersectional)
    if positive_class is not None:
        warnings = label_warnings(labels_raw, data, class_names, source=source) + warnings
    inputs, feature_names = build_inputs(table, data, model_inputs, source=source)
    return PreparedData(
        inputs=inputs,
        labels=labels,
        groups=groups,
        class_names=class_names,
        positive_class=positive_class,
        feature_names=feature_names,
        rows=int(labels.shape[0]),
        warnings=warnings,
    )
