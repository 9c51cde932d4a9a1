"""Accuracy and fairness metrics of one model, per group and as gaps with bootstrap intervals.

Binary metrics (n_classes=2, positive_class given), per group and overall:
count, base_rate (share of positive labels), selection_rate (share predicted positive), accuracy,
balanced_accuracy (mean of TPR and TNR), tpr, fpr, fnr and precision.

Binary gaps per attribute: equalized_odds_difference (larger of the TPR and FPR gaps, as
fairlearn.metrics.equalized_odds_difference with agg="worst_case"), equal_opportunity_difference
(TPR gap), false_positive_rate_difference, demographic_parity_difference,
demographic_parity_ratio (min over max selection rate), accuracy_difference and
worst_group_accuracy (the lowest group accuracy, reported among the gaps with an interval).

Multiclass metrics (positive_class None): count, accuracy and one-vs-rest tpr, fpr and
selection_rate per class. Gaps: accuracy_difference, worst_group_accuracy,
equalized_odds_difference and demographic_parity_difference (each the maximum over classes of the
one-vs-rest gap), and per class "tpr_difference:<class>" and "fpr_difference:<class>".

A gap is the maximum minus the minimum over the groups where the rate is defined, and None when
fewer than two groups define it. A rate with a zero denominator is None, never 0, and a warning
gives the reason. Groups with fewer than `min_group_size` rows get "small": true and a warning
but still count in the gaps.

Intervals are percentile bootstrap intervals over rows. Each attribute gets its own multinomial
draw over its (group, true, predicted) categories, seeded with the same seed.
"""

from __future__ import annotations

import logging

import numpy as np

from workers.fairness.bootstrap import BootstrapSettings, resample_cells
from workers.fairness.counts import (
    GroupCodes,
    cells_from_counts,
    check_classes,
    check_codes,
    check_groups,
    confusion_counts,
)
from workers.fairness.output import as_float, gap_reason, value_entries
from workers.fairness.rates import BINARY_RATES, CLASS_RATES, Marginals, compute_metrics, marginals_from_cells

logger = logging.getLogger(__name__)


def evaluate_predictions(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: GroupCodes,
    *,
    n_classes: int,
    class_names: list[str],
    positive_class: int | None,
    bootstrap: BootstrapSettings,
    min_group_size: int = 30,
) -> dict:
    """Measure one model's metrics overall, per group and as gaps between groups.

    `groups` maps each attribute name to (group code per row, group names). Returns
    {"overall", "by_group", "gaps", "warnings"} with plain Python values only.
    """
    class_names = check_classes(n_classes, class_names, positive_class)
    y_true = check_codes("y_true", y_true, n_values=n_classes, n_rows=None)
    y_pred = check_codes("y_pred", y_pred, n_values=n_classes, n_rows=y_true.shape[0])
    groups = check_groups(groups, n_rows=y_true.shape[0])
    if isinstance(min_group_size, bool) or not isinstance(min_group_size, (int, np.integer)) or min_group_size < 0:
        raise ValueError(f"min_group_size must be a non-negative int, got {min_group_size!r}")

    warnings: list[str] = []
    everyone = np.zeros(y_true.shape[0], dtype=np.int64)
    overall_counts = confusion_counts(y_true, y_pred, everyone, n_groups=1, n_classes=n_classes)
    overall_cells = cells_from_counts(overall_counts)
    overall_marginals = marginals_from_cells(overall_cells.frequency[np.newaxis, :], overall_cells)
    overall_rates, _ = compute_metrics(overall_marginals, positive_class, class_names)
    overall = group_entry(
        overall_rates, overall_marginals, 0,
        scope="overall", positive_class=positive_class, class_names=class_names, warnings=warnings,
    )

    by_group, gaps = {}, {}
    for attribute, (codes, names) in groups.items():
        counts = confusion_counts(y_true, y_pred, codes, n_groups=len(names), n_classes=n_classes)
        cells = cells_from_counts(counts)
        marginals = marginals_from_cells(resample_cells(cells.frequency, bootstrap), cells)
        rates, gap_samples = compute_metrics(marginals, positive_class, class_names)

        by_group[attribute] = {}
        for index, name in enumerate(names):
            entry = group_entry(
                rates, marginals, index,
                scope=f"{attribute}={name}", positive_class=positive_class,
                class_names=class_names, warnings=warnings,
            )
            by_group[attribute][name] = flag_small_group(entry, f"{attribute}={name}", min_group_size, warnings)
        gaps[attribute] = gap_entries(attribute, gap_samples, positive_class, bootstrap, warnings)

    logger.debug("evaluated %s rows over %s attributes with %s warnings", y_true.shape[0], len(groups), len(warnings))
    return {"overall": overall, "by_group": by_group, "gaps": gaps, "warnings": warnings}


def group_entry(
    rates: dict[str, np.ndarray],
    marginals: Marginals,
    index: int,
    *,
    scope: str,
    positive_class: int | None,
    class_names: list[str],
    warnings: list[str],
) -> dict:
    """Build the observed metrics of group `index`, adding a warning for each undefined rate."""
    rows = int(marginals.rows[0, index])
    entry: dict = {"count": rows}
    if positive_class is not None:
        for name in BINARY_RATES:
            entry[name] = as_float(rates[name][0, index])
    else:
        entry["accuracy"] = as_float(rates["accuracy"][0, index])
        entry["per_class"] = {
            class_name: {name: as_float(rates[name][0, index, position]) for name in CLASS_RATES}
            for position, class_name in enumerate(class_names)
        }

    if rows == 0:
        warnings.append(f"{scope}: the group has no rows, so all its rates are undefined")
    elif positive_class is not None:
        has_positives = bool(marginals.labels[0, index, positive_class] > 0)
        warnings.extend(binary_rate_warnings(entry, scope, has_positives))
    else:
        warnings.extend(class_rate_warnings(entry, scope))
    return entry


def binary_rate_warnings(entry: dict, scope: str, has_positives: bool) -> list[str]:
    """Explain each undefined binary rate of a group that has rows."""
    no_positives = "the group has no positive labels"
    no_negatives = "the group has no negative labels"
    reasons = {
        "tpr": no_positives,
        "fnr": no_positives,
        "fpr": no_negatives,
        "balanced_accuracy": no_negatives if has_positives else no_positives,
        "precision": "the group has no positive predictions",
    }
    return [
        f"{scope}: {name} is undefined because {reason}"
        for name, reason in reasons.items()
        if entry[name] is None
    ]


def class_rate_warnings(entry: dict, scope: str) -> list[str]:
    """Explain each undefined one-vs-rest rate of a group that has rows."""
    messages = []
    for class_name, class_rates in entry["per_class"].items():
        if class_rates["tpr"] is None:
            messages.append(
                f"{scope}: tpr of class {class_name!r} is undefined because the group has no labels "
                f"of class {class_name!r}"
            )
        if class_rates["fpr"] is None:
            messages.append(
                f"{scope}: fpr of class {class_name!r} is undefined because every label in the group "
                f"is class {class_name!r}"
            )
    return messages


def flag_small_group(entry: dict, scope: str, min_group_size: int, warnings: list[str]) -> dict:
    """Set entry["small"] and warn about a group with rows but fewer than `min_group_size`."""
    rows = entry["count"]
    small = rows < min_group_size
    if small and rows > 0:
        row_word = "row" if rows == 1 else "rows"
        warnings.append(
            f"{scope}: only {rows} {row_word}, fewer than min_group_size={min_group_size}; "
            "its rates and the gaps that include it are unreliable"
        )
    return {"count": rows, "small": small, **{key: value for key, value in entry.items() if key != "count"}}


def gap_entries(
    attribute: str,
    gap_samples: dict[str, np.ndarray],
    positive_class: int | None,
    bootstrap: BootstrapSettings,
    warnings: list[str],
) -> dict[str, dict]:
    """Build {"value", "ci"} for every gap of one attribute, warning about undefined values."""
    names = list(gap_samples)
    samples = np.stack([gap_samples[name] for name in names], axis=1)
    labels = [f"{name} for {attribute}" for name in names]
    entries = value_entries(samples, labels, bootstrap, warnings)

    for name, entry in zip(names, entries):
        if entry["value"] is None:
            warnings.append(f"{attribute}: {name} is undefined because {gap_reason(name, positive_class)}")
    return dict(zip(names, entries))
