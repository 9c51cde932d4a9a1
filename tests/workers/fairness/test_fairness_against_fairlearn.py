"""Cross-checks of the count-based metrics against fairlearn's MetricFrame and gap functions.

fairlearn 0.15 computes tpr and fpr with sklearn's confusion_matrix(normalize="true"), which turns
the 0/0 of an empty row into 0.0. So a group with no positive labels gets tpr 0.0 there (and a
group with no negative labels gets fpr 0.0), and that 0.0 enters fairlearn's differences. Our
metrics report such a rate as None and leave the group out of the gap. The comparisons below
therefore run fairlearn on the rows of the groups that define the rate.
"""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score

from workers.fairness import BootstrapSettings, evaluate_predictions

NO_BOOTSTRAP = BootstrapSettings(resamples=0)


def evaluate_binary(rows, **options) -> dict:
    """Run evaluate_predictions on binary rows with one attribute named "group"."""
    options.setdefault("bootstrap", NO_BOOTSTRAP)
    return evaluate_predictions(
        rows.y_true,
        rows.y_pred,
        {"group": (rows.codes, rows.names)},
        n_classes=2,
        class_names=["negative", "positive"],
        positive_class=1,
        **options,
    )


def fairlearn_rates(y_true, y_pred, sensitive) -> MetricFrame:
    """Per-group tpr, fpr and selection rate from fairlearn."""
    return MetricFrame(
        metrics={"tpr": true_positive_rate, "fpr": false_positive_rate, "selection_rate": selection_rate},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sensitive,
    )


def rows_of_groups(rows, group_names: list[str]) -> np.ndarray:
    """Boolean mask of the rows that belong to one of `group_names`."""
    return np.isin(rows.group_labels, group_names)


@pytest.mark.parametrize("rate", ["tpr", "fpr", "selection_rate"])
def test_group_rates_match_metricframe(mixed_rows, rate):
    result = evaluate_binary(mixed_rows)
    frame = fairlearn_rates(mixed_rows.y_true, mixed_rows.y_pred, mixed_rows.group_labels)

    compared = 0
    for name in mixed_rows.names:
        ours = result["by_group"]["group"][name][rate]
        if ours is None:
            continue
        assert ours == pytest.approx(frame.by_group.loc[name, rate], abs=1e-12), name
        compared += 1
    assert compared >= 4


def test_undefined_rates_where_fairlearn_reports_zero(mixed_rows):
    result = evaluate_binary(mixed_rows)
    frame = fairlearn_rates(mixed_rows.y_true, mixed_rows.y_pred, mixed_rows.group_labels)

    assert result["by_group"]["group"]["no_positives"]["tpr"] is None
    assert frame.by_group.loc["no_positives", "tpr"] == 0.0
    assert result["by_group"]["group"]["single"]["fpr"] is None
    assert frame.by_group.loc["single", "fpr"] == 0.0


def test_equalized_odds_matches_fairlearn_defined(mixed_rows):
    result = evaluate_binary(mixed_rows)
    with_positives = rows_of_groups(mixed_rows, ["A", "B", "C", "single"])
    with_negatives = rows_of_groups(mixed_rows, ["A", "B", "C", "no_positives"])

    tpr_gap = equal_opportunity_difference(
        mixed_rows.y_true[with_positives],
        mixed_rows.y_pred[with_positives],
        sensitive_features=mixed_rows.group_labels[with_positives],
    )
    fpr_gap = MetricFrame(
        metrics=false_positive_rate,
        y_true=mixed_rows.y_true[with_negatives],
        y_pred=mixed_rows.y_pred[with_negatives],
        sensitive_features=mixed_rows.group_labels[with_negatives],
    ).difference()

    gaps = result["gaps"]["group"]
    assert gaps["equal_opportunity_difference"]["value"] == pytest.approx(tpr_gap, abs=1e-12)
    assert gaps["false_positive_rate_difference"]["value"] == pytest.approx(fpr_gap, abs=1e-12)
    assert gaps["equalized_odds_difference"]["value"] == pytest.approx(max(tpr_gap, fpr_gap), abs=1e-12)


def test_demographic_parity_matches_fairlearn(mixed_rows):
    result = evaluate_binary(mixed_rows)
    sensitive = mixed_rows.group_labels

    expected_difference = demographic_parity_difference(
        mixed_rows.y_true, mixed_rows.y_pred, sensitive_features=sensitive
    )
    expected_ratio = demographic_parity_ratio(mixed_rows.y_true, mixed_rows.y_pred, sensitive_features=sensitive)

    gaps = result["gaps"]["group"]
    assert gaps["demographic_parity_difference"]["value"] == pytest.approx(expected_difference, abs=1e-12)
    assert gaps["demographic_parity_ratio"]["value"] == pytest.approx(expected_ratio, abs=1e-12)


def test_equalized_odds_all_groups_defined(binary_rows):
    result = evaluate_binary(binary_rows)
    expected = equalized_odds_difference(
        binary_rows.y_true, binary_rows.y_pred, sensitive_features=binary_rows.group_labels
    )

    assert result["gaps"]["group"]["equalized_odds_difference"]["value"] == pytest.approx(expected, abs=1e-12)


def test_accuracy_gaps_match_metricframe(binary_rows):
    result = evaluate_binary(binary_rows)
    frame = MetricFrame(
        metrics=accuracy_score,
        y_true=binary_rows.y_true,
        y_pred=binary_rows.y_pred,
        sensitive_features=binary_rows.group_labels,
    )

    gaps = result["gaps"]["group"]
    assert gaps["accuracy_difference"]["value"] == pytest.approx(frame.difference(), abs=1e-12)
    assert gaps["worst_group_accuracy"]["value"] == pytest.approx(frame.group_min(), abs=1e-12)


def test_overall_rates_match_fairlearn(mixed_rows):
    overall = evaluate_binary(mixed_rows)["overall"]

    assert overall["tpr"] == pytest.approx(true_positive_rate(mixed_rows.y_true, mixed_rows.y_pred), abs=1e-12)
    assert overall["fpr"] == pytest.approx(false_positive_rate(mixed_rows.y_true, mixed_rows.y_pred), abs=1e-12)
    assert overall["count"] == mixed_rows.y_true.size


def evaluate_multiclass(rows) -> dict:
    """Run evaluate_predictions on three-class rows with one attribute named "group"."""
    return evaluate_predictions(
        rows.y_true,
        rows.y_pred,
        {"group": (rows.codes, rows.names)},
        n_classes=3,
        class_names=["low", "medium", "high"],
        positive_class=None,
        bootstrap=NO_BOOTSTRAP,
    )


def test_multiclass_accuracy_matches_metricframe(multiclass_rows):
    result = evaluate_multiclass(multiclass_rows)
    frame = MetricFrame(
        metrics=accuracy_score,
        y_true=multiclass_rows.y_true,
        y_pred=multiclass_rows.y_pred,
        sensitive_features=multiclass_rows.group_labels,
    )

    for name in multiclass_rows.names:
        assert result["by_group"]["group"][name]["accuracy"] == pytest.approx(frame.by_group[name], abs=1e-12)
    gaps = result["gaps"]["group"]
    assert gaps["accuracy_difference"]["value"] == pytest.approx(frame.difference(), abs=1e-12)


@pytest.mark.parametrize("class_index, class_name", [(0, "low"), (1, "medium"), (2, "high")])
def test_multiclass_one_vs_rest_rates(multiclass_rows, class_index, class_name):
    result = evaluate_multiclass(multiclass_rows)
    frame = fairlearn_rates(
        (multiclass_rows.y_true == class_index).astype(int),
        (multiclass_rows.y_pred == class_index).astype(int),
        multiclass_rows.group_labels,
    )

    for name in multiclass_rows.names:
        ours = result["by_group"]["group"][name]["per_class"][class_name]
        for rate in ("tpr", "fpr", "selection_rate"):
            if ours[rate] is not None:
                assert ours[rate] == pytest.approx(frame.by_group.loc[name, rate], abs=1e-12), (name, rate)
    assert result["by_group"]["group"]["C"]["per_class"]["medium"]["tpr"] is None
