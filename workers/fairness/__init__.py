"""Per-group accuracy and fairness metrics with bootstrap confidence intervals (numpy only).

Per-group confusion counts, a (groups, K, K) array indexed [group, true, predicted], are computed
once per attribute. Every rate, gap and interval derives from them:

- `evaluate_predictions` measures one model: rates overall and per group, and gaps between groups
  with percentile bootstrap intervals (definitions in `workers.fairness.evaluate`).
- `compare_predictions` measures a variant against the base model on the same resampled rows
  (definitions in `workers.fairness.compare`).

The bootstrap draws category counts from a multinomial distribution in place of resampling rows,
and computes every statistic for all resamples at once (see `workers.fairness.bootstrap`).
Results hold plain Python values: floats, ints, strings, lists, dicts and None for undefined values.
"""

from workers.fairness.bootstrap import BootstrapSettings
from workers.fairness.compare import compare_predictions
from workers.fairness.evaluate import evaluate_predictions

__all__ = ["BootstrapSettings", "compare_predictions", "evaluate_predictions"]
