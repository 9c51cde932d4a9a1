"""Kamiran and Calders weights and group-balanced resampling on hand-built label and group arrays."""

from __future__ import annotations

import numpy as np
import pytest

from workers.interventions.resampling import balanced_resample
from workers.interventions.reweighing import kamiran_calders_weights

# Group 0: 6 rows, 4 positive. Group 1: 4 rows, 1 positive.
LABELS = np.array([1, 1, 1, 1, 0, 0, 1, 0, 0, 0])
GROUPS = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])


def weighted_positive_rate(weights, group):
    mask = GROUPS == group
    return float(np.sum(weights[mask] * LABELS[mask]) / np.sum(weights[mask]))


def test_weights_match_formula():
    weights = kamiran_calders_weights(LABELS, GROUPS)
    # P(group 0) = 0.6, P(label 1) = 0.5, P(group 0, label 1) = 0.4.
    assert weights[0] == pytest.approx(0.6 * 0.5 / 0.4)
    # P(group 1) = 0.4, P(label 1) = 0.5, P(group 1, label 1) = 0.1.
    assert weights[6] == pytest.approx(0.4 * 0.5 / 0.1)


def test_weights_equalize_positive_rate():
    weights = kamiran_calders_weights(LABELS, GROUPS)
    assert weighted_positive_rate(weights, 0) == pytest.approx(0.5)
    assert weighted_positive_rate(weights, 1) == pytest.approx(0.5)


def test_weights_sum_to_row_count():
    assert kamiran_calders_weights(LABELS, GROUPS).sum() == pytest.approx(LABELS.size)


def test_weights_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        kamiran_calders_weights(LABELS, GROUPS[:5])


def test_resampling_keeps_every_row():
    index = np.arange(LABELS.size)
    resampled = balanced_resample(index, LABELS, GROUPS, np.random.default_rng(0))
    assert set(index) <= set(resampled.tolist())
    assert resampled.size > index.size


def test_resampling_balances_positive_rate():
    resampled = balanced_resample(np.arange(LABELS.size), LABELS, GROUPS, np.random.default_rng(0))
    rates = [float(np.mean(LABELS[resampled][GROUPS[resampled] == group])) for group in (0, 1)]
    assert abs(rates[0] - rates[1]) < 0.2
    assert abs(rates[0] - rates[1]) < abs(4 / 6 - 1 / 4)


def test_resampling_only_copies_selected_rows():
    index = np.array([0, 1, 4, 6, 7, 8])
    resampled = balanced_resample(index, LABELS, GROUPS, np.random.default_rng(0))
    assert set(resampled.tolist()) <= set(index.tolist())


def test_resampling_is_seeded():
    first = balanced_resample(np.arange(LABELS.size), LABELS, GROUPS, np.random.default_rng(3))
    second = balanced_resample(np.arange(LABELS.size), LABELS, GROUPS, np.random.default_rng(3))
    assert np.array_equal(first, second)
