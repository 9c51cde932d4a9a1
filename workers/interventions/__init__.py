"""Fairness interventions, placed before, during or after compression.

- `reweighing`: Kamiran and Calders weights per group and label in the training loss.
- `resampling`: copies of rows from small (group, label) cells.
- `adversarial`: adversarial debiasing (Zhang, Lemoine and Mitchell, 2018).
- `fair_pruning`: pruning by per-group importance and by the change of a soft fairness gap.
- `thresholds`: fairlearn's ThresholdOptimizer, written as a rule file beside the ONNX model.

`build_with_intervention` applies a recipe with its intervention at its placement, and
`comparisons` puts each intervened variant beside the same compression without intervention.
Torch and fairlearn load only when an intervention runs.
"""

from workers.interventions.plan import BuiltVariant, build_with_intervention

__all__ = ["BuiltVariant", "build_with_intervention"]
