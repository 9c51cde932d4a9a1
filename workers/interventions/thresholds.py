"""Threshold post-processing (fairlearn's ThresholdOptimizer; Hardt, Price and Srebro, 2016).

Per group of one sensitive attribute, the decision is a randomized mix of two score thresholds
and, for equalized odds, a constant prediction. The mix is chosen on the training table to
maximize accuracy subject to the constraint on the groups' rates. The ONNX file cannot carry such a
rule, so it is written beside the model as `<variant>.thresholds.json`, and the sensitive attribute
must be known at inference to apply it.

The score a rule thresholds is the positive class's logit minus the other's (for probabilities,
the same difference of probabilities), or the single score of a one-output model. Randomized
decisions draw from a generator seeded with the rule file's seed, one number per row in row order,
so the same rows give the same predictions.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from workers.compression.base import CompressionContext, CompressionError

logger = logging.getLogger(__name__)

RULES_VERSION = 1
SCORE_BATCH_SIZE = 8192
WARNING = (
    "predictions apply per-group decision thresholds from {file}, which need the sensitive attribute "
    "'{attribute}' of every row at inference; the ONNX file alone gives the unadjusted predictions"
)


def positive_scores(output: np.ndarray, kind: str) -> np.ndarray:
    """Return one score per row, larger for the positive class, from a binary model's output."""
    output = np.asarray(output, dtype=np.float64)
    if kind == "single_score":
        return output.reshape(-1)
    if kind != "scores" or output.ndim != 2 or output.shape[1] != 2:
        raise CompressionError(
            f"thresholds post-processing needs a binary classifier's scores, got an output of shape "
            f"{tuple(output.shape)} ({kind}); it does not apply to multiclass or label outputs"
        )
    return output[:, 1] - output[:, 0]


def model_scores(model: Any, inputs: dict[str, np.ndarray], output_name: str, device: str = "cpu") -> np.ndarray:
    """Run `model` in ONNX Runtime and return its positive scores for every row."""
    from workers.inference import create_session

    session = create_session(model, device=device)
    rows = next(iter(inputs.values())).shape[0]
    scores = []
    for start in range(0, rows, SCORE_BATCH_SIZE):
        batch = {name: array[start : start + SCORE_BATCH_SIZE] for name, array in inputs.items()}
        (output,) = session.run([output_name], batch)
        output = np.asarray(output)
        kind = "single_score" if output.ndim == 1 or output.shape[1] == 1 else "scores"
        scores.append(positive_scores(output, kind))
    return np.concatenate(scores)


def fit_threshold_rules(model: Any, context: CompressionContext, intervention: Any) -> dict[str, Any]:
    """Fit ThresholdOptimizer on the training table's scores of `model`; return the rule file's content."""
    from fairlearn.postprocessing import ThresholdOptimizer

    training = context.training
    if training is None:
        raise CompressionError("thresholds fits on data.training, but the job names no training table; add one")
    if training.positive_class is None or len(training.class_names) != 2:
        raise CompressionError(
            f"thresholds post-processing applies to binary classifiers; this model has {len(training.class_names)} "
            "classes"
        )
    attribute = intervention.attribute
    codes, names = training.groups[attribute]
    scores = model_scores(model, training.inputs, context.output_name, context.device)
    labels = (training.labels == training.positive_class).astype(np.int64)
    sensitive = np.asarray(names, dtype=object)[codes]

    optimizer = ThresholdOptimizer(
        estimator=_score_column(),
        constraints=intervention.objective,
        objective="accuracy_score",
        prefit=True,
        predict_method="predict",
    )
    try:
        optimizer.fit(scores.reshape(-1, 1), labels, sensitive_features=sensitive)
    except ValueError as error:
        raise CompressionError(f"ThresholdOptimizer failed on the training scores: {error}") from error
    rules = {
        str(group): _rule_entry(rule) for group, rule in optimizer.interpolated_thresholder_.interpolation_dict.items()
    }
    context.log(f"thresholds: fitted {intervention.objective} rules for {len(rules)} groups of {attribute}")
    return {
        "version": RULES_VERSION,
        "attribute": attribute,
        "objective": intervention.objective,
        "score": "positive logit minus negative logit (or the single score)",
        "positive_class": training.class_names[training.positive_class],
        "seed": context.seed,
        "groups": rules,
    }


def _score_column() -> Any:
    """Return an estimator whose prediction is its input's first column, so ThresholdOptimizer receives the scores."""
    from sklearn.base import BaseEstimator

    class ScoreColumn(BaseEstimator):
        def fit(self, features: np.ndarray, labels: np.ndarray) -> ScoreColumn:
            return self

        def predict(self, features: np.ndarray) -> np.ndarray:
            return np.asarray(features)[:, 0]

        def __sklearn_is_fitted__(self) -> bool:
            return True

    return ScoreColumn()


def _rule_entry(rule: Any) -> dict[str, Any]:
    entry = {
        "p0": float(rule.p0),
        "operation0": {"operator": rule.operation0.operator, "threshold": _finite(rule.operation0.threshold)},
        "p1": float(rule.p1),
        "operation1": {"operator": rule.operation1.operator, "threshold": _finite(rule.operation1.threshold)},
    }
    if "p_ignore" in rule:
        entry["p_ignore"] = float(rule.p_ignore)
        entry["prediction_constant"] = float(rule.prediction_constant)
    return entry


def _finite(value: float) -> float | str:
    # JSON has no infinity, so unbounded thresholds are written as the strings "inf" and "-inf".
    value = float(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def positive_probabilities(scores: np.ndarray, row_groups: np.ndarray, rules: dict[str, Any]) -> np.ndarray:
    """Return each row's probability of a positive decision under its group's rule."""
    probabilities = np.zeros(scores.shape[0], dtype=np.float64)
    for group in np.unique(row_groups):
        rule = rules["groups"].get(str(group))
        if rule is None:
            raise CompressionError(
                f"the threshold rules have no entry for group '{group}' of '{rules['attribute']}' (groups: "
                f"{', '.join(rules['groups'])}); the training table must hold every group the evaluation has"
            )
        mask = row_groups == group
        value = rule["p0"] * _operate(rule["operation0"], scores[mask]) + rule["p1"] * _operate(
            rule["operation1"], scores[mask]
        )
        if "p_ignore" in rule:
            value = rule["p_ignore"] * rule["prediction_constant"] + (1.0 - rule["p_ignore"]) * value
        probabilities[mask] = value
    return probabilities


def apply_threshold_rules(
    scores: np.ndarray, row_groups: np.ndarray, rules: dict[str, Any], *, positive_class: int
) -> np.ndarray:
    """Return class indices from the rules, drawing randomized decisions from the rules' seed."""
    probabilities = positive_probabilities(scores, row_groups, rules)
    draws = np.random.default_rng(rules["seed"]).random(scores.shape[0])
    positive = draws < probabilities
    return np.where(positive, positive_class, 1 - positive_class).astype(np.int64)


def _operate(operation: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    threshold = float(operation["threshold"])
    if operation["operator"] == ">":
        return (scores > threshold).astype(np.float64)
    return (scores < threshold).astype(np.float64)


def write_rules(rules: dict[str, Any], path: Path) -> None:
    from workers.report import write_json_atomic

    write_json_atomic(path, rules)


def read_rules(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def warning_text(file_name: str, attribute: str) -> str:
    return WARNING.format(file=file_name, attribute=attribute)
