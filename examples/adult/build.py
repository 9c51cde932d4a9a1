"""Build the Adult example: model-ready tables, a torch MLP exported to ONNX, and a job spec.

Run `python examples/adult/build.py --out DIR` (default: examples/adult/build). The script reads
only the files in examples/adult/data/ and writes:

- adult-train.csv, adult-eval.csv: feature columns, then `sex`, `race` and `income` as text
- adult-mlp.onnx: float32 input `features` [batch, n_features] and output `logits` [batch, 2],
  where logit 0 is `<=50K` and logit 1 is `>50K`
- feature_names.json: the feature columns in the order the model reads them
- spec.yaml: a fairsqueeze job spec over the files above, with paths relative to DIR

Sex and race are not model inputs ("fairness through unawareness"), so the audit measures what the
model does to those groups without seeing them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import torch
import yaml
from torch import nn

logger = logging.getLogger(__name__)

EXAMPLE_DIR = Path(__file__).resolve().parent
DATA_DIR = EXAMPLE_DIR / "data"
DEFAULT_OUT = EXAMPLE_DIR / "build"

# Column order of adult.data and adult.test, as listed in adult.names.
RAW_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
]

# fnlwgt is a census sampling weight, not an attribute of the person, so it is no feature.
NUMERIC_FEATURES = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL_FEATURES = [
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "native-country",
]
SENSITIVE_COLUMNS = ["sex", "race"]
LABEL_COLUMN = "income"
POSITIVE_LABEL = ">50K"
LABELS = ["<=50K", ">50K"]

# UCI replaced "Unknown" with "?" when it built the files, so the tables use the original word.
MISSING_CATEGORY = "Unknown"

# Decimal places kept in the standardized columns, so the CSV contains exactly what the model saw.
DECIMALS = 6

TRAIN_FILE = "adult-train.csv"
EVAL_FILE = "adult-eval.csv"
MODEL_FILE = "adult-mlp.onnx"
FEATURES_FILE = "feature_names.json"
SPEC_FILE = "spec.yaml"


@dataclass(frozen=True)
class TrainingConfig:
    seed: int = 0
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 1e-3
    hidden_sizes: tuple[int, ...] = (64, 32)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weight initialization and batch order")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training table")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    return args


def read_adult(path: Path) -> pd.DataFrame:
    """Read adult.data or adult.test into a frame with clean text values and labels without the period."""
    try:
        # adult.test opens with the line "|1x3 Cross validator", and "|" occurs nowhere else in the files.
        frame = pd.read_csv(
            path,
            header=None,
            names=RAW_COLUMNS,
            skipinitialspace=True,
            na_values=["?"],
            keep_default_na=False,
            comment="|",
        )
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"Adult data file not found: {path}. Restore it with `git checkout -- {path}`."
        ) from error

    frame[LABEL_COLUMN] = frame[LABEL_COLUMN].str.rstrip(".")
    unknown_labels = sorted(set(frame[LABEL_COLUMN]) - set(LABELS))
    if unknown_labels:
        raise ValueError(f"{path}: invalid income labels {unknown_labels}, expected only {LABELS}")

    for column in CATEGORICAL_FEATURES + SENSITIVE_COLUMNS:
        frame[column] = frame[column].fillna(MISSING_CATEGORY)

    logger.info("read %s rows from %s", len(frame), path)
    return frame


def fit_encoding(train: pd.DataFrame) -> tuple[dict[str, tuple[float, float]], dict[str, list[str]]]:
    """Return the mean and standard deviation of each numeric feature and the sorted categories of each
    categorical feature, all taken from the training split."""
    scales = {}
    for column in NUMERIC_FEATURES:
        values = train[column].astype(np.float64)
        mean, std = float(values.mean()), float(values.std(ddof=0))
        if std == 0.0:
            raise ValueError(
                f"numeric feature '{column}' has the same value {mean} in every training row, "
                "so it cannot be standardized. Remove it from NUMERIC_FEATURES."
            )
        scales[column] = (mean, std)

    categories = {column: sorted(train[column].unique()) for column in CATEGORICAL_FEATURES}
    return scales, categories


def encode_features(
    frame: pd.DataFrame, scales: dict[str, tuple[float, float]], categories: dict[str, list[str]]
) -> pd.DataFrame:
    """Standardize the numeric features and one-hot encode the categorical ones as `column=value`.

    A category absent from the training split gets 0 in every column of its feature.
    """
    encoded = {}
    for column in NUMERIC_FEATURES:
        mean, std = scales[column]
        encoded[column] = ((frame[column].astype(np.float64) - mean) / std).round(DECIMALS)

    for column in CATEGORICAL_FEATURES:
        unseen = sorted(set(frame[column]) - set(categories[column]))
        if unseen:
            logger.info(
                "column %s: values %s are not in the training split, so their one-hot columns are all 0",
                column,
                unseen,
            )
        for category in categories[column]:
            encoded[f"{column}={category}"] = (frame[column] == category).astype(np.int64)

    return pd.DataFrame(encoded, index=frame.index)


def build_table(frame: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([features, frame[SENSITIVE_COLUMNS + [LABEL_COLUMN]]], axis=1)


def build_mlp(n_features: int, hidden_sizes: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_features
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, len(LABELS)))
    return nn.Sequential(*layers)


def to_tensors(table: pd.DataFrame, feature_names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = torch.from_numpy(table[feature_names].to_numpy(dtype=np.float32))
    targets = torch.from_numpy((table[LABEL_COLUMN] == POSITIVE_LABEL).to_numpy(dtype=np.int64))
    return inputs, targets


def train_mlp(train: pd.DataFrame, feature_names: list[str], config: TrainingConfig) -> nn.Sequential:
    """Train the MLP with Adam on cross-entropy. The seed fixes the initial weights and the batch order."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    inputs, targets = to_tensors(train, feature_names)

    model = build_mlp(len(feature_names), config.hidden_sizes)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_function = nn.CrossEntropyLoss()

    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(inputs), generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_function(model(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
        logger.info("epoch %s/%s: mean training loss %.4f", epoch + 1, config.epochs, total_loss / len(order))

    model.eval()
    return model


def export_onnx(model: nn.Module, n_features: int, path: Path) -> None:
    """Export to ONNX opset 17 with input `features` and output `logits`, both with a dynamic batch axis."""
    example = torch.zeros(1, n_features, dtype=torch.float32)

    # dynamo=False selects the TorchScript-based exporter, which writes this MLP as three Gemm nodes
    # and two Relu nodes at opset 17. Torch 2.9 and later warn that this exporter is deprecated.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="You are using the legacy TorchScript", category=DeprecationWarning
        )
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["features"],
            output_names=["logits"],
            dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
        )

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def onnx_accuracy(model_path: Path, table: pd.DataFrame, feature_names: list[str]) -> float:
    """Run the exported model in ONNX Runtime on the table and return its accuracy."""
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    inputs = table[feature_names].to_numpy(dtype=np.float32)
    (logits,) = session.run(["logits"], {"features": inputs})
    predicted = np.asarray(LABELS)[logits.argmax(axis=1)]
    return float((predicted == table[LABEL_COLUMN].to_numpy()).mean())


def job_spec(feature_names: list[str]) -> dict:
    """Return the job spec over the built files. It has no `recipes` key, so audits run the default set."""
    return {
        "schema_version": 1,
        "model": MODEL_FILE,
        "data": {
            "evaluation": EVAL_FILE,
            "training": TRAIN_FILE,
            "label": LABEL_COLUMN,
            "positive_label": POSITIVE_LABEL,
            "sensitive": list(SENSITIVE_COLUMNS),
            "features": list(feature_names),
        },
    }


def write_outputs(out: Path, train: pd.DataFrame, evaluation: pd.DataFrame, feature_names: list[str]) -> None:
    train.to_csv(out / TRAIN_FILE, index=False)
    evaluation.to_csv(out / EVAL_FILE, index=False)
    (out / FEATURES_FILE).write_text(json.dumps(feature_names, indent=2) + "\n", encoding="utf-8")
    spec_text = yaml.safe_dump(job_spec(feature_names), sort_keys=False, default_flow_style=False)
    (out / SPEC_FILE).write_text(spec_text, encoding="utf-8")


def build(out: Path, config: TrainingConfig) -> float:
    """Write the tables, the ONNX model, the feature list and the job spec to `out`, and return the
    model's accuracy on adult.test."""
    out.mkdir(parents=True, exist_ok=True)

    train_raw = read_adult(DATA_DIR / "adult.data")
    eval_raw = read_adult(DATA_DIR / "adult.test")

    scales, categories = fit_encoding(train_raw)
    train_table = build_table(train_raw, encode_features(train_raw, scales, categories))
    eval_table = build_table(eval_raw, encode_features(eval_raw, scales, categories))
    other_columns = SENSITIVE_COLUMNS + [LABEL_COLUMN]
    feature_names = [column for column in train_table.columns if column not in other_columns]
    write_outputs(out, train_table, eval_table, feature_names)
    logger.info("wrote %s and %s with %s feature columns", TRAIN_FILE, EVAL_FILE, len(feature_names))

    model = train_mlp(train_table, feature_names, config)
    export_onnx(model, len(feature_names), out / MODEL_FILE)
    return onnx_accuracy(out / MODEL_FILE, eval_table, feature_names)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)

    # A fixed thread count keeps the float results of a seed independent of the machine's core count.
    # For an MLP this small, one thread trained as fast as two (about 2 s on a 2-core CPU).
    # NOTE: byte-identical builds were checked on one CPU only. Another instruction set (AVX-512 or
    # ARM) may round differently and change the weights slightly.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    started = time.perf_counter()
    try:
        accuracy = build(args.out, TrainingConfig(seed=args.seed, epochs=args.epochs))
    except (FileNotFoundError, ValueError) as error:
        logger.error("Adult build failed: %s", error)
        return 1
    elapsed = time.perf_counter() - started

    print(f"accuracy on adult.test: {accuracy:.4f}")
    print(f"wrote {args.out} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
