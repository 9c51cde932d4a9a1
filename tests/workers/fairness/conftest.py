"""Synthetic labelled predictions with known group structure, built from fixed seeds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass
class Rows:
    """Labels, predictions and one sensitive attribute as group codes plus names."""

    y_true: np.ndarray
    y_pred: np.ndarray
    codes: np.ndarray
    names: list[str]

    @property
    def group_labels(self) -> np.ndarray:
        """Group name per row, the form fairlearn's sensitive_features takes."""
        return np.asarray(self.names)[self.codes]


def build_binary_rows(
    seed: int, sizes: list[int], base_rates: list[float], flip_rates: list[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw binary labels per group and predictions that flip each label with the group's rate."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(len(sizes)), sizes)
    y_true = (rng.random(codes.size) < np.asarray(base_rates)[codes]).astype(np.int64)
    flips = rng.random(codes.size) < np.asarray(flip_rates)[codes]
    y_pred = np.where(flips, 1 - y_true, y_true)
    order = rng.permutation(codes.size)
    return y_true[order], y_pred[order], codes[order]


def draw_binary(seed: int, n: int) -> Rows:
    """Draw n rows over four well-populated groups whose rates differ clearly."""
    sizes = [n // 4] * 3 + [n - 3 * (n // 4)]
    y_true, y_pred, codes = build_binary_rows(
        seed, sizes, base_rates=[0.5, 0.3, 0.4, 0.6], flip_rates=[0.1, 0.25, 0.15, 0.2]
    )
    return Rows(y_true, y_pred, codes, ["A", "B", "C", "D"])


@pytest.fixture
def mixed_rows() -> Rows:
    """Three large groups, a group with no positive labels and a one-row group with a positive label."""
    y_true, y_pred, codes = build_binary_rows(
        7, [700, 500, 600, 60], base_rates=[0.5, 0.3, 0.4, 0.0], flip_rates=[0.1, 0.3, 0.2, 0.25]
    )
    y_true = np.append(y_true, 1)
    y_pred = np.append(y_pred, 1)
    codes = np.append(codes, 4)
    return Rows(y_true, y_pred, codes, ["A", "B", "C", "no_positives", "single"])


@pytest.fixture
def binary_rows() -> Rows:
    """5,000 rows over four groups where every rate is defined."""
    return draw_binary(seed=3, n=5000)


@pytest.fixture
def multiclass_rows() -> Rows:
    """Three classes over three groups, where group "C" has no labels of class 1."""
    rng = np.random.default_rng(11)
    n = 3000
    codes = rng.integers(0, 3, n)
    y_true = rng.integers(0, 3, n)
    y_true[(codes == 2) & (y_true == 1)] = 0
    keep = rng.random(n) < np.asarray([0.85, 0.7, 0.6])[codes]
    y_pred = np.where(keep, y_true, rng.integers(0, 3, n))
    return Rows(y_true, y_pred, codes, ["A", "B", "C"])


@pytest.fixture
def draw_rows():
    """The `draw_binary(seed, n)` factory, for tests that need several sample sizes."""
    return draw_binary
