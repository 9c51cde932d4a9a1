"""Paired comparison of a compressed variant against the base model on the same rows.

Overall: accuracy_change (variant accuracy minus base accuracy, negative when the variant is
worse) and disagreement (share of rows where the two models predict different classes).
Per group: accuracy_drop (base accuracy minus variant accuracy, positive when the variant is
worse) and disagreement. Per attribute and gap: variant gap minus base gap, with the gaps of
`evaluate.py`. A change is None when either model's value is None.

Intervals come from a paired bootstrap: the row categories are group x true x base prediction x
variant prediction, so each resample draws the same rows for both models. Each attribute, and the
overall figures, get their own multinomial draw seeded with the same seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from workers.fairness.bootstrap import BootstrapSettings, resample_cells, sum_by_target
from workers.fairness.counts import Cells, GroupCodes, check_classes, check_codes, check_groups, paired_cells
from workers.fairness.output import value_entries
from workers.fairness.rates import compute_metrics, divide, marginals_from_cells

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairedSamples:
    """Observed (index 0) and resampled values of one attribute's paired statistics."""

    rows: np.ndarray
    accuracy_drop: np.ndarray
    disagreement: np.ndarray
    gap_changes: dict[str, np.ndarray]


def compare_predictions(
    y_true: np.ndarray,
    y_pred_base: np.ndarray,
    y_pred_variant: np.ndarray,
    groups: GroupCodes,
    *,
    n_classes: int,
    class_names: list[str],
    positive_class: int | None,
    bootstrap: BootstrapSettings,
) -> dict:
    """Measure how a variant's accuracy and gaps differ from the base model's, with paired intervals.

    Returns {"overall", "by_group", "gaps", "warnings"} with plain Python values only.
    """
    class_names = check_classes(n_classes, class_names, positive_class)
    y_true = check_codes("y_true", y_true, n_values=n_classes, n_rows=None)
    n_rows = y_true.shape[0]
    y_pred_base = check_codes("y_pred_base", y_pred_base, n_values=n_classes, n_rows=n_rows)
    y_pred_variant = check_codes("y_pred_variant", y_pred_variant, n_values=n_classes, n_rows=n_rows)
    groups = check_groups(groups, n_rows=n_rows)

    def sample(codes: np.ndarray, n_groups: int) -> PairedSamples:
        cells = paired_cells(
            y_true, y_pred_base, y_pred_variant, codes, n_groups=n_groups, n_classes=n_classes
        )
        return paired_samples(cells, resample_cells(cells.frequency, bootstrap), positive_class, class_names)

    warnings: list[str] = []
    overall_samples = sample(np.zeros(n_rows, dtype=np.int64), 1)
    change, disagreement = value_entries(
        np.stack([-overall_samples.accuracy_drop[:, 0], overall_samples.disagreement[:, 0]], axis=1),
        ["overall accuracy_change", "overall disagreement"],
        bootstrap,
        warnings,
    )
    overall = {"accuracy_change": change, "disagreement": disagreement}

    by_group, gaps = {}, {}
    for attribute, (codes, names) in groups.items():
        samples = sample(codes, len(names))
        by_group[attribute] = group_changes(attribute, names, samples, bootstrap, warnings)
        gaps[attribute] = gap_changes(attribute, samples, bootstrap, warnings)

    logger.debug("compared %s rows over %s attributes with %s warnings", n_rows, len(groups), len(warnings))
    return {"overall": overall, "by_group": by_group, "gaps": gaps, "warnings": warnings}


def paired_samples(
    cells: Cells, weights: np.ndarray, positive_class: int | None, class_names: list[str]
) -> PairedSamples:
    """Compute both models' metrics from the same resampled cells and take their differences."""
    base = marginals_from_cells(weights, cells)
    variant = marginals_from_cells(weights, cells, predicted=cells.variant)
    base_rates, base_gaps = compute_metrics(base, positive_class, class_names)
    variant_rates, variant_gaps = compute_metrics(variant, positive_class, class_names)

    changed = cells.predicted != cells.variant
    disagreements = sum_by_target(weights[:, changed], cells.group[changed], cells.n_groups)
    return PairedSamples(
        rows=base.rows,
        accuracy_drop=base_rates["accuracy"] - variant_rates["accuracy"],
        disagreement=divide(disagreements, base.rows),
        gap_changes={name: variant_gaps[name] - base_gaps[name] for name in base_gaps},
    )


def group_changes(
    attribute: str,
    names: list[str],
    samples: PairedSamples,
    bootstrap: BootstrapSettings,
    warnings: list[str],
) -> dict[str, dict]:
    """Build accuracy_drop and disagreement entries for each group of one attribute."""
    statistics = np.concatenate([samples.accuracy_drop, samples.disagreement], axis=1)
    labels = [f"accuracy_drop for {attribute}={name}" for name in names]
    labels += [f"disagreement for {attribute}={name}" for name in names]
    entries = value_entries(statistics, labels, bootstrap, warnings)

    result = {}
    for index, name in enumerate(names):
        rows = int(samples.rows[0, index])
        if rows == 0:
            warnings.append(f"{attribute}={name}: the group has no rows, so its changes are undefined")
        result[name] = {
            "count": rows,
            "accuracy_drop": entries[index],
            "disagreement": entries[len(names) + index],
        }
    return result


def gap_changes(
    attribute: str, samples: PairedSamples, bootstrap: BootstrapSettings, warnings: list[str]
) -> dict[str, dict]:
    """Build the change entry (variant gap minus base gap) for every gap of one attribute."""
    names = list(samples.gap_changes)
    statistics = np.stack([samples.gap_changes[name] for name in names], axis=1)
    labels = [f"the change in {name} for {attribute}" for name in names]
    entries = value_entries(statistics, labels, bootstrap, warnings)

    for name, entry in zip(names, entries):
        if entry["value"] is None:
            warnings.append(
                f"{attribute}: the change in {name} is undefined because {name} is undefined "
                "for the base or the variant model"
            )
    return dict(zip(names, entries))
