"""Properties of the multinomial bootstrap, and agreement with an explicit row-resampling loop."""

from __future__ import annotations

import numpy as np
import pytest

from workers.fairness import BootstrapSettings, compare_predictions, evaluate_predictions
from workers.fairness.bootstrap import percentile_intervals

BINARY = {"n_classes": 2, "class_names": ["negative", "positive"], "positive_class": 1}
CHECKED_GAPS = ["equalized_odds_difference", "demographic_parity_difference", "accuracy_difference"]


def evaluate(rows, bootstrap: BootstrapSettings) -> dict:
    """Run evaluate_predictions on binary rows with one attribute named "group"."""
    return evaluate_predictions(
        rows.y_true, rows.y_pred, {"group": (rows.codes, rows.names)}, bootstrap=bootstrap, **BINARY
    )


def naive_gaps(y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray, n_groups: int) -> dict[str, float]:
    """Compute three gaps with boolean masks per group, independently of the count-based code."""
    tpr, fpr, selection, accuracy = [], [], [], []
    for group in range(n_groups):
        member = codes == group
        tpr.append(y_pred[member & (y_true == 1)].mean())
        fpr.append(y_pred[member & (y_true == 0)].mean())
        selection.append(y_pred[member].mean())
        accuracy.append((y_pred[member] == y_true[member]).mean())
    return {
        "equalized_odds_difference": max(max(tpr) - min(tpr), max(fpr) - min(fpr)),
        "demographic_parity_difference": max(selection) - min(selection),
        "accuracy_difference": max(accuracy) - min(accuracy),
    }


def naive_intervals(statistic, n_rows: int, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample row indices in an explicit loop and take 2.5% and 97.5% quantiles of `statistic`."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        rows = rng.integers(0, n_rows, n_rows)
        values.append(statistic(rows))
    values = np.asarray(values)
    return np.quantile(values, 0.025, axis=0), np.quantile(values, 0.975, axis=0)


def ci_width(entry: dict) -> float:
    low, high = entry["ci"]
    return high - low


@pytest.mark.parametrize(
    "gap",
    [
        "equalized_odds_difference",
        "equal_opportunity_difference",
        "false_positive_rate_difference",
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "accuracy_difference",
        "worst_group_accuracy",
    ],
)
def test_interval_contains_point_estimate(draw_rows, gap):
    result = evaluate(draw_rows(seed=5, n=40_000), BootstrapSettings(resamples=500))
    entry = result["gaps"]["group"][gap]

    assert entry["ci"][0] <= entry["value"]
    assert entry["value"] <= entry["ci"][1]


@pytest.mark.parametrize("gap", CHECKED_GAPS)
def test_interval_shrinks_with_rows(draw_rows, gap):
    settings = BootstrapSettings(resamples=500)
    small = evaluate(draw_rows(seed=5, n=2_000), settings)["gaps"]["group"][gap]
    large = evaluate(draw_rows(seed=5, n=40_000), settings)["gaps"]["group"][gap]

    assert ci_width(large) < ci_width(small) / 2


def test_same_seed_same_intervals(binary_rows):
    first = evaluate(binary_rows, BootstrapSettings(resamples=300, seed=4))
    second = evaluate(binary_rows, BootstrapSettings(resamples=300, seed=4))
    other_seed = evaluate(binary_rows, BootstrapSettings(resamples=300, seed=5))

    assert first == second
    assert first["gaps"] != other_seed["gaps"]


def test_interval_ends_match_naive_loop(binary_rows):
    ours = evaluate(binary_rows, BootstrapSettings(resamples=2000, seed=1))["gaps"]["group"]

    def statistic(rows: np.ndarray) -> list[float]:
        gaps = naive_gaps(binary_rows.y_true[rows], binary_rows.y_pred[rows], binary_rows.codes[rows], 4)
        return [gaps[name] for name in CHECKED_GAPS]

    low, high = naive_intervals(statistic, binary_rows.y_true.size, resamples=200, seed=2)
    for index, gap in enumerate(CHECKED_GAPS):
        assert ours[gap]["ci"][0] == pytest.approx(low[index], abs=0.02), gap
        assert ours[gap]["ci"][1] == pytest.approx(high[index], abs=0.02), gap


def make_variant(rows, seed: int) -> np.ndarray:
    """Flip 15% of group "B" predictions and 5% of the others, to act as a compressed model."""
    rng = np.random.default_rng(seed)
    flip_rate = np.where(rows.codes == 1, 0.15, 0.05)
    return np.where(rng.random(rows.y_pred.size) < flip_rate, 1 - rows.y_pred, rows.y_pred)


def test_paired_intervals_match_naive_loop(binary_rows):
    variant = make_variant(binary_rows, seed=8)
    result = compare_predictions(
        binary_rows.y_true, binary_rows.y_pred, variant, {"group": (binary_rows.codes, binary_rows.names)},
        bootstrap=BootstrapSettings(resamples=2000, seed=1), **BINARY,
    )

    def statistic(rows: np.ndarray) -> list[float]:
        y_true, codes = binary_rows.y_true[rows], binary_rows.codes[rows]
        base_pred, variant_pred = binary_rows.y_pred[rows], variant[rows]
        accuracy_change = (variant_pred == y_true).mean() - (base_pred == y_true).mean()
        base_gap = naive_gaps(y_true, base_pred, codes, 4)["equalized_odds_difference"]
        variant_gap = naive_gaps(y_true, variant_pred, codes, 4)["equalized_odds_difference"]
        return [accuracy_change, variant_gap - base_gap]

    low, high = naive_intervals(statistic, binary_rows.y_true.size, resamples=200, seed=2)
    accuracy_change = result["overall"]["accuracy_change"]
    gap_change = result["gaps"]["group"]["equalized_odds_difference"]
    assert accuracy_change["ci"][0] == pytest.approx(low[0], abs=0.02)
    assert accuracy_change["ci"][1] == pytest.approx(high[0], abs=0.02)
    assert gap_change["ci"][0] == pytest.approx(low[1], abs=0.02)
    assert gap_change["ci"][1] == pytest.approx(high[1], abs=0.02)


def test_paired_comparison_narrower_than_unpaired(binary_rows):
    variant = make_variant(binary_rows, seed=8)
    settings = BootstrapSettings(resamples=1000)
    groups = {"group": (binary_rows.codes, binary_rows.names)}
    paired = compare_predictions(
        binary_rows.y_true, binary_rows.y_pred, variant, groups, bootstrap=settings, **BINARY
    )["gaps"]["group"]["accuracy_difference"]

    base = evaluate(binary_rows, settings)["gaps"]["group"]["accuracy_difference"]
    # Both models see the same resampled rows, so most of the sampling noise cancels in the change,
    # and its interval is narrower than the interval of the base model's gap alone.
    assert ci_width(paired) < ci_width(base)


def test_identical_predictions_change_nothing(binary_rows):
    result = compare_predictions(
        binary_rows.y_true, binary_rows.y_pred, binary_rows.y_pred.copy(),
        {"group": (binary_rows.codes, binary_rows.names)},
        bootstrap=BootstrapSettings(resamples=200), **BINARY,
    )

    entries = list(result["overall"].values()) + list(result["gaps"]["group"].values())
    for group in result["by_group"]["group"].values():
        entries += [group["accuracy_drop"], group["disagreement"]]
    for entry in entries:
        assert entry["value"] == 0.0
        assert entry["ci"] == [0.0, 0.0]


def test_percentile_intervals_match_numpy_quantile():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(999, 3))
    samples[:100, 1] = np.nan
    intervals = percentile_intervals(samples, confidence=0.9)

    for column in range(3):
        defined = samples[:, column][~np.isnan(samples[:, column])]
        assert intervals.low[column] == pytest.approx(np.quantile(defined, 0.05), abs=1e-12)
        assert intervals.high[column] == pytest.approx(np.quantile(defined, 0.95), abs=1e-12)
    assert intervals.undefined.tolist() == [0, 100, 0]
