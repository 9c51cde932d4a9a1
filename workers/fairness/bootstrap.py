"""Bootstrap over rows, done as one multinomial draw over row categories.

Resampling n rows with replacement only changes how many times each row category occurs, for
example each (group, true label, predicted label) combination. Those occurrence counts follow a
multinomial distribution with n trials and the observed category shares as probabilities. So one
`Generator.multinomial(n, shares, size=resamples)` call replaces the loop over resamples. Every
statistic is then computed for all resamples at once from the drawn category counts.

Row 0 of every weight matrix built here holds the observed counts, and rows 1..resamples hold
the resampled ones. Statistics computed from such a matrix therefore carry the point estimate at
index 0, produced by the same code as the resampled values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootstrapSettings:
    """Percentile bootstrap options: resample count, two-sided confidence level and seed.

    `resamples=0` turns intervals off (every `ci` is None).
    """

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, (int, np.integer)):
            raise TypeError(f"resamples must be an int, got {self.resamples!r}")
        if self.resamples < 0:
            raise ValueError(f"resamples must be 0 or more, got {self.resamples}; use 0 to skip intervals")
        try:
            confidence = float(self.confidence)
        except (TypeError, ValueError) as error:
            raise ValueError(f"confidence must be a number between 0 and 1, got {self.confidence!r}") from error
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must lie strictly between 0 and 1, got {self.confidence}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")


def resample_cells(frequencies: np.ndarray, settings: BootstrapSettings) -> np.ndarray:
    """Draw bootstrap counts for row categories, with the observed counts as row 0.

    `frequencies` contains the row count of each category. Returns an int64 array of shape
    (1 + resamples, categories). A fresh generator seeded with `settings.seed` is used on every
    call, so each caller (one per sensitive attribute) gets the same stream.
    """
    frequencies = np.asarray(frequencies, dtype=np.int64)
    observed = frequencies[np.newaxis, :]
    if settings.resamples == 0:
        return observed

    # NOTE: the draw takes resamples x categories int64 values. With hundreds of classes the
    # non-empty categories can number in the tens of thousands, so 1,000 resamples take hundreds
    # of megabytes, and about twice that while the observed row is joined on.
    total = int(frequencies.sum())
    shares = frequencies / total
    generator = np.random.default_rng(settings.seed)
    draws = generator.multinomial(total, shares, size=settings.resamples)
    return np.concatenate([observed, draws.astype(np.int64, copy=False)], axis=0)


def sum_by_target(weights: np.ndarray, targets: np.ndarray, n_targets: int) -> np.ndarray:
    """Add up the columns of `weights` (samples, categories) that share a target index.

    Returns an array of shape (samples, n_targets). Targets that no category maps to stay 0.
    """
    result = np.zeros((weights.shape[0], n_targets), dtype=weights.dtype)
    if targets.size == 0:
        return result

    order = np.argsort(targets, kind="stable")
    sorted_targets = targets[order]
    starts = np.flatnonzero(np.diff(sorted_targets, prepend=-1))
    sums = np.add.reduceat(weights[:, order], starts, axis=1)
    result[:, sorted_targets[starts]] = sums
    return result


@dataclass(frozen=True)
class Intervals:
    """Percentile interval ends per statistic, and how many resamples left each one undefined."""

    low: np.ndarray
    high: np.ndarray
    undefined: np.ndarray
    resamples: int


def percentile_intervals(samples: np.ndarray, confidence: float) -> Intervals:
    """Compute percentile intervals for each column of `samples` (resamples, statistics).

    NaN marks a resample where the statistic is undefined. Those resamples are left out, and the
    quantiles of the rest use linear interpolation, the default method of `numpy.quantile`.
    """
    samples = np.asarray(samples, dtype=np.float64)
    resamples = samples.shape[0]
    ordered = np.sort(samples, axis=0)
    defined = np.count_nonzero(~np.isnan(samples), axis=0)
    tail = (1.0 - confidence) / 2.0

    ends = []
    for quantile in (tail, 1.0 - tail):
        position = quantile * np.maximum(defined - 1, 0)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, np.maximum(defined - 1, 0))
        fraction = position - below
        lower_value = np.take_along_axis(ordered, below[np.newaxis, :], axis=0)[0]
        upper_value = np.take_along_axis(ordered, above[np.newaxis, :], axis=0)[0]
        ends.append(lower_value + fraction * (upper_value - lower_value))

    return Intervals(low=ends[0], high=ends[1], undefined=resamples - defined, resamples=resamples)
