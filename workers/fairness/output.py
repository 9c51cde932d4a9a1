"""JSON-ready values, {"value", "ci"} entries and the texts of undefined-value warnings."""

from __future__ import annotations

import logging
import math

import numpy as np

from workers.fairness.bootstrap import BootstrapSettings, percentile_intervals

logger = logging.getLogger(__name__)

GAP_REASONS = {
    "equalized_odds_difference": "fewer than two groups have a defined tpr or fewer than two a defined fpr",
    "equal_opportunity_difference": "fewer than two groups have a defined tpr",
    "false_positive_rate_difference": "fewer than two groups have a defined fpr",
    "demographic_parity_difference": "fewer than two groups have rows",
    "demographic_parity_ratio": "fewer than two groups have rows or no group has a positive prediction",
    "accuracy_difference": "fewer than two groups have rows",
    "worst_group_accuracy": "no group has rows",
}
MULTICLASS_EQUALIZED_ODDS_REASON = "no class has both a defined tpr difference and a defined fpr difference"


def as_float(value: float | np.floating) -> float | None:
    """Convert a numpy scalar to a plain float, with NaN as None and -0.0 as 0.0."""
    number = float(value)
    if math.isnan(number):
        return None
    return number + 0.0


def gap_reason(name: str, positive_class: int | None) -> str:
    """Say why the gap `name` can be undefined, for a warning."""
    if name.startswith("tpr_difference:"):
        return f"fewer than two groups have labels of class {name.split(':', 1)[1]!r}"
    if name.startswith("fpr_difference:"):
        return f"fewer than two groups have labels of a class other than {name.split(':', 1)[1]!r}"
    if name == "equalized_odds_difference" and positive_class is None:
        return MULTICLASS_EQUALIZED_ODDS_REASON
    return GAP_REASONS[name]


def value_entries(
    samples: np.ndarray, labels: list[str], settings: BootstrapSettings, warnings: list[str]
) -> list[dict]:
    """Turn statistics of shape (S, M) into M {"value", "ci"} entries.

    Row 0 of `samples` contains the point estimates and rows 1.. the resampled values. `labels` name
    the statistics in warnings, for example "equalized_odds_difference for sex". A `ci` is None
    when resampling is off, when the value is undefined, or, with a warning, when more than half
    of the resamples leave the statistic undefined.

    NOTE: a gap is a max-minus-min statistic, so its resampled values lean upward when groups are
    close. The percentile interval then can sit above a point estimate near 0.
    """
    values = [as_float(value) for value in samples[0]]
    if settings.resamples == 0:
        return [{"value": value, "ci": None} for value in values]

    intervals = percentile_intervals(samples[1:], settings.confidence)
    entries = []
    for index, value in enumerate(values):
        ci = None
        undefined = int(intervals.undefined[index])
        if value is not None and 2 * undefined > intervals.resamples:
            warnings.append(
                f"the confidence interval of {labels[index]} is None because {undefined} of "
                f"{intervals.resamples} resamples leave it undefined"
            )
        elif value is not None:
            ci = [as_float(intervals.low[index]), as_float(intervals.high[index])]
        entries.append({"value": value, "ci": ci})
    return entries
