"""Rates and gaps computed from per-group confusion counts, for many samples at once.

Every function here takes arrays with a leading sample axis S: index 0 is the observed data and
the other indices are bootstrap resamples (see `bootstrap.py`). Shapes are written (S, G) for one
value per group and (S, G, K) for one value per group and class.

Three per-group, per-class count arrays determine every metric used here:
`hits` (rows with true == predicted == k), `labels` (rows whose true class is k) and
`predictions` (rows predicted as k). For two classes they fix the whole 2 x 2 confusion matrix.

A rate whose denominator is zero is NaN here. A gap is the maximum minus the minimum of a rate
over the groups where the rate is defined, and NaN when fewer than two groups define it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from workers.fairness.bootstrap import sum_by_target
from workers.fairness.counts import Cells

logger = logging.getLogger(__name__)

BINARY_RATES = (
    "base_rate",
    "selection_rate",
    "accuracy",
    "balanced_accuracy",
    "tpr",
    "fpr",
    "fnr",
    "precision",
)
BINARY_GAPS = (
    "equalized_odds_difference",
    "equal_opportunity_difference",
    "false_positive_rate_difference",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "accuracy_difference",
    "worst_group_accuracy",
)
CLASS_RATES = ("tpr", "fpr", "selection_rate")


@dataclass(frozen=True)
class Marginals:
    """Per-group, per-class counts of shape (S, G, K): hits, true labels and predictions."""

    hits: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        """Rows per group, shape (S, G)."""
        return self.labels.sum(axis=-1)


def marginals_from_cells(
    weights: np.ndarray, cells: Cells, *, predicted: np.ndarray | None = None
) -> Marginals:
    """Aggregate cell counts `weights` (S, cells) into per-group, per-class marginals.

    `predicted` selects which prediction column of a paired table to use (base or variant);
    it defaults to `cells.predicted`.
    """
    predicted = cells.predicted if predicted is None else predicted
    n_targets = cells.n_groups * cells.n_classes
    samples = weights.shape[0]
    label_target = cells.group * cells.n_classes + cells.true
    prediction_target = cells.group * cells.n_classes + predicted
    correct = cells.true == predicted

    shape = (samples, cells.n_groups, cells.n_classes)
    hits = sum_by_target(weights[:, correct], label_target[correct], n_targets)
    labels = sum_by_target(weights, label_target, n_targets)
    predictions = sum_by_target(weights, prediction_target, n_targets)
    return Marginals(hits.reshape(shape), labels.reshape(shape), predictions.reshape(shape))


def divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Divide elementwise, giving NaN where the denominator is zero."""
    numerator, denominator = np.broadcast_arrays(numerator, denominator)
    result = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=result, where=denominator > 0)
    return result


def binary_rates(marginals: Marginals, positive_class: int) -> dict[str, np.ndarray]:
    """Compute the binary rates of `BINARY_RATES` per group, each of shape (S, G)."""
    negative_class = 1 - positive_class
    rows = marginals.rows
    true_positives = marginals.hits[..., positive_class]
    true_negatives = marginals.hits[..., negative_class]
    positives = marginals.labels[..., positive_class]
    negatives = marginals.labels[..., negative_class]
    predicted_positives = marginals.predictions[..., positive_class]

    tpr = divide(true_positives, positives)
    tnr = divide(true_negatives, negatives)
    return {
        "base_rate": divide(positives, rows),
        "selection_rate": divide(predicted_positives, rows),
        "accuracy": divide(true_positives + true_negatives, rows),
        "balanced_accuracy": (tpr + tnr) / 2.0,
        "tpr": tpr,
        "fpr": divide(predicted_positives - true_positives, negatives),
        "fnr": divide(positives - true_positives, positives),
        "precision": divide(true_positives, predicted_positives),
    }


def multiclass_rates(marginals: Marginals) -> dict[str, np.ndarray]:
    """Compute accuracy (S, G) and one-vs-rest tpr, fpr and selection_rate (S, G, K) per group."""
    rows = marginals.rows
    rows_per_class = rows[..., np.newaxis]
    return {
        "accuracy": divide(marginals.hits.sum(axis=-1), rows),
        "tpr": divide(marginals.hits, marginals.labels),
        "fpr": divide(marginals.predictions - marginals.hits, rows_per_class - marginals.labels),
        "selection_rate": divide(marginals.predictions, rows_per_class),
    }


def spread(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Return max minus min over `axis`, skipping NaN, and NaN where fewer than two values exist."""
    defined = ~np.isnan(values)
    largest = np.where(defined, values, -np.inf).max(axis=axis)
    smallest = np.where(defined, values, np.inf).min(axis=axis)
    enough = np.count_nonzero(defined, axis=axis) >= 2
    return np.where(enough, largest - smallest, np.nan)


def minimum(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Return the minimum over `axis`, skipping NaN, and NaN where no value exists."""
    defined = ~np.isnan(values)
    smallest = np.where(defined, values, np.inf).min(axis=axis)
    return np.where(defined.any(axis=axis), smallest, np.nan)


def maximum(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Return the maximum over `axis`, skipping NaN, and NaN where no value exists."""
    defined = ~np.isnan(values)
    largest = np.where(defined, values, -np.inf).max(axis=axis)
    return np.where(defined.any(axis=axis), largest, np.nan)


def ratio_of_extremes(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Return min / max over `axis`, NaN where fewer than two values exist or the max is 0."""
    defined = ~np.isnan(values)
    enough = np.count_nonzero(defined, axis=axis) >= 2
    ratio = divide(minimum(values, axis), np.nan_to_num(maximum(values, axis)))
    return np.where(enough, ratio, np.nan)


def binary_gaps(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Compute the gaps of `BINARY_GAPS` over the group axis, each of shape (S,).

    equalized_odds_difference is the larger of the TPR and FPR gaps (fairlearn's default
    agg="worst_case"), and NaN when either of them is NaN.
    """
    tpr_gap = spread(rates["tpr"])
    fpr_gap = spread(rates["fpr"])
    return {
        "equalized_odds_difference": np.maximum(tpr_gap, fpr_gap),
        "equal_opportunity_difference": tpr_gap,
        "false_positive_rate_difference": fpr_gap,
        "demographic_parity_difference": spread(rates["selection_rate"]),
        "demographic_parity_ratio": ratio_of_extremes(rates["selection_rate"]),
        "accuracy_difference": spread(rates["accuracy"]),
        "worst_group_accuracy": minimum(rates["accuracy"]),
    }


def multiclass_gaps(rates: dict[str, np.ndarray], class_names: list[str]) -> dict[str, np.ndarray]:
    """Compute multiclass gaps over the group axis, each of shape (S,).

    Per class, the one-vs-rest equalized odds difference is the larger of its TPR and FPR gaps
    (NaN when either is NaN). equalized_odds_difference and demographic_parity_difference take the
    maximum over the classes where the per-class value is defined.
    """
    tpr_gaps = spread(rates["tpr"], axis=-2)
    fpr_gaps = spread(rates["fpr"], axis=-2)
    selection_gaps = spread(rates["selection_rate"], axis=-2)

    # NOTE: a class whose gap is undefined (present in fewer than two groups) is skipped, so the
    # maximum over classes can understate the worst class when rare classes are missing.
    gaps = {
        "accuracy_difference": spread(rates["accuracy"]),
        "worst_group_accuracy": minimum(rates["accuracy"]),
        "equalized_odds_difference": maximum(np.maximum(tpr_gaps, fpr_gaps)),
        "demographic_parity_difference": maximum(selection_gaps),
    }
    for index, name in enumerate(class_names):
        gaps[f"tpr_difference:{name}"] = tpr_gaps[..., index]
        gaps[f"fpr_difference:{name}"] = fpr_gaps[..., index]
    return gaps


def compute_metrics(
    marginals: Marginals, positive_class: int | None, class_names: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Return (rates, gaps) for binary metrics when `positive_class` is set, else multiclass ones."""
    if positive_class is not None:
        rates = binary_rates(marginals, positive_class)
        return rates, binary_gaps(rates)
    rates = multiclass_rates(marginals)
    return rates, multiclass_gaps(rates, class_names)
