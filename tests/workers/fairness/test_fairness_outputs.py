"""Undefined values, warnings, JSON-ready output and input checks of the fairness metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workers.fairness import BootstrapSettings, compare_predictions, evaluate_predictions

BINARY = {"n_classes": 2, "class_names": ["negative", "positive"], "positive_class": 1}


def evaluate(rows, bootstrap=BootstrapSettings(resamples=200), **options) -> dict:
    """Run evaluate_predictions on binary rows with one attribute named "group"."""
    return evaluate_predictions(
        rows.y_true, rows.y_pred, {"group": (rows.codes, rows.names)}, bootstrap=bootstrap, **BINARY, **options
    )


def plain_types(value) -> set[type]:
    """Collect the type of every leaf and container in a nested result."""
    found = {type(value)}
    if isinstance(value, dict):
        for key, item in value.items():
            found |= {type(key)} | plain_types(item)
    elif isinstance(value, list):
        for item in value:
            found |= plain_types(item)
    return found


def test_no_positive_labels_gives_none(mixed_rows):
    result = evaluate(mixed_rows)
    group = result["by_group"]["group"]["no_positives"]

    assert group["tpr"] is None
    assert group["fnr"] is None
    assert group["balanced_accuracy"] is None
    assert group["base_rate"] == 0.0
    assert "group=no_positives: tpr is undefined because the group has no positive labels" in result["warnings"]


def test_one_row_group_flagged_small(mixed_rows):
    result = evaluate(mixed_rows)
    group = result["by_group"]["group"]["single"]

    assert group["small"] is True
    assert group["count"] == 1
    assert group["fpr"] is None
    assert "group=single: fpr is undefined because the group has no negative labels" in result["warnings"]
    assert any(warning.startswith("group=single: only 1 row,") for warning in result["warnings"])
    assert result["by_group"]["group"]["A"]["small"] is False


def test_gap_undefined_with_one_defining_group():
    y_true = np.array([1, 0, 1, 0] * 20 + [0] * 40)
    y_pred = np.array([1, 0, 0, 0] * 20 + [1, 0] * 20)
    codes = np.array([0] * 80 + [1] * 40)
    result = evaluate_predictions(
        y_true, y_pred, {"sex": (codes, ["Male", "Female"])}, bootstrap=BootstrapSettings(resamples=100), **BINARY
    )

    gap = result["gaps"]["sex"]["equal_opportunity_difference"]
    assert gap == {"value": None, "ci": None}
    assert result["gaps"]["sex"]["equalized_odds_difference"]["value"] is None
    assert result["gaps"]["sex"]["false_positive_rate_difference"]["value"] == pytest.approx(0.5)
    assert (
        "sex: equal_opportunity_difference is undefined because fewer than two groups have a defined tpr"
        in result["warnings"]
    )


def test_mostly_undefined_resamples_drop_interval():
    # Each group has one positive label, so a resample keeps both in only about 40% of draws
    # ((1 - 1/e) squared), and the tpr gap is undefined in the others.
    y_true = np.array([1] + [0] * 99 + [1] + [0] * 99)
    y_pred = np.array([1] + [0] * 99 + [0] + [0] * 99)
    codes = np.repeat([0, 1], 100)
    result = evaluate_predictions(
        y_true, y_pred, {"sex": (codes, ["Male", "Female"])}, bootstrap=BootstrapSettings(resamples=500), **BINARY
    )

    gap = result["gaps"]["sex"]["equal_opportunity_difference"]
    assert gap["value"] == 1.0
    assert gap["ci"] is None
    assert any(
        warning.startswith("the confidence interval of equal_opportunity_difference for sex is None because")
        for warning in result["warnings"]
    )
    assert result["gaps"]["sex"]["demographic_parity_difference"]["ci"] is not None


def test_zero_resamples_give_no_intervals(binary_rows):
    result = evaluate(binary_rows, bootstrap=BootstrapSettings(resamples=0))

    for entry in result["gaps"]["group"].values():
        assert entry["ci"] is None
    assert result["warnings"] == []


def test_group_without_rows_reported(binary_rows):
    names = binary_rows.names + ["empty"]
    result = evaluate_predictions(
        binary_rows.y_true, binary_rows.y_pred, {"group": (binary_rows.codes, names)},
        bootstrap=BootstrapSettings(resamples=50), **BINARY,
    )
    group = result["by_group"]["group"]["empty"]

    assert group["count"] == 0
    assert group["accuracy"] is None
    assert group["selection_rate"] is None
    assert "group=empty: the group has no rows, so all its rates are undefined" in result["warnings"]
    assert result["gaps"]["group"]["demographic_parity_difference"]["value"] is not None


def test_evaluation_output_is_plain_json(mixed_rows):
    result = evaluate(mixed_rows)

    assert plain_types(result) <= {dict, list, str, int, float, bool, type(None)}
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_comparison_output_is_plain_json(mixed_rows):
    variant = np.where(mixed_rows.codes == 1, 1 - mixed_rows.y_pred, mixed_rows.y_pred)
    result = compare_predictions(
        mixed_rows.y_true, mixed_rows.y_pred, variant, {"group": (mixed_rows.codes, mixed_rows.names)},
        bootstrap=BootstrapSettings(resamples=200), **BINARY,
    )

    assert plain_types(result) <= {dict, list, str, int, float, bool, type(None)}
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert result["by_group"]["group"]["B"]["disagreement"]["value"] == 1.0
    assert result["by_group"]["group"]["A"]["disagreement"]["value"] == 0.0


def test_comparison_signs_follow_names(binary_rows):
    worse = np.where(binary_rows.codes == 0, 1 - binary_rows.y_true, binary_rows.y_pred)
    result = compare_predictions(
        binary_rows.y_true, binary_rows.y_pred, worse, {"group": (binary_rows.codes, binary_rows.names)},
        bootstrap=BootstrapSettings(resamples=0), **BINARY,
    )

    assert result["overall"]["accuracy_change"]["value"] < 0
    assert result["by_group"]["group"]["A"]["accuracy_drop"]["value"] > 0
    assert result["by_group"]["group"]["B"]["accuracy_drop"]["value"] == 0.0


def test_multiclass_undefined_class_warned(multiclass_rows):
    result = evaluate_predictions(
        multiclass_rows.y_true, multiclass_rows.y_pred, {"group": (multiclass_rows.codes, multiclass_rows.names)},
        n_classes=3, class_names=["low", "medium", "high"], positive_class=None,
        bootstrap=BootstrapSettings(resamples=100),
    )

    assert result["by_group"]["group"]["C"]["per_class"]["medium"]["tpr"] is None
    assert (
        "group=C: tpr of class 'medium' is undefined because the group has no labels of class 'medium'"
        in result["warnings"]
    )
    assert result["gaps"]["group"]["tpr_difference:medium"]["value"] is not None
    assert set(result["gaps"]["group"]) >= {"equalized_odds_difference", "fpr_difference:high"}


def test_label_out_of_range_rejected():
    with pytest.raises(ValueError, match=r"y_pred\[2\] = 2 is not a class index in 0..1"):
        evaluate_predictions(
            np.array([0, 1, 1]), np.array([0, 1, 2]), {}, bootstrap=BootstrapSettings(), **BINARY
        )


def test_float_labels_rejected():
    with pytest.raises(TypeError, match="y_true must hold integer codes"):
        evaluate_predictions(
            np.array([0.0, 1.0]), np.array([0, 1]), {}, bootstrap=BootstrapSettings(), **BINARY
        )


def test_group_codes_length_rejected():
    with pytest.raises(ValueError, match=r"groups\['sex'\] codes has 2 rows but y_true has 3"):
        evaluate_predictions(
            np.array([0, 1, 1]), np.array([0, 1, 1]), {"sex": (np.array([0, 1]), ["Male", "Female"])},
            bootstrap=BootstrapSettings(), **BINARY,
        )


def test_positive_class_needs_two_classes():
    with pytest.raises(ValueError, match="needs n_classes=2, got 3"):
        evaluate_predictions(
            np.array([0, 1, 2]), np.array([0, 1, 2]), {}, n_classes=3, class_names=["a", "b", "c"],
            positive_class=1, bootstrap=BootstrapSettings(),
        )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"confidence": 1.0}, "confidence must lie strictly between 0 and 1"),
        ({"resamples": -1}, "resamples must be 0 or more"),
        ({"seed": -3}, "seed must be a non-negative int"),
    ],
)
def test_bootstrap_settings_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        BootstrapSettings(**options)
