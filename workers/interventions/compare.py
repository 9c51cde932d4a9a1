"""The report's comparison section: each intervened variant beside the same compression without one.

For every recipe with an intervention, the reference is the recipe with the same steps (methods
and options) and no intervention. The differences are variant minus reference, from a paired
bootstrap over the evaluation rows (`workers.fairness.compare_predictions` with the reference in
the place of the base model), so both models are measured on the same resampled rows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.fairness import BootstrapSettings, compare_predictions

if TYPE_CHECKING:
    from workers.data import PreparedData
    from workers.spec import Recipe

logger = logging.getLogger(__name__)


def reference_recipe(recipe: Recipe, recipes: list[Recipe]) -> Recipe | None:
    """Return the recipe with the same steps and no intervention, or None when the job has none."""
    key = _steps_key(recipe)
    for candidate in recipes:
        if candidate.intervention is None and _steps_key(candidate) == key:
            return candidate
    return None


def _steps_key(recipe: Recipe) -> list[tuple[str, list]]:
    return [(step.method, sorted(step.options().items())) for step in recipe.steps]


def build_comparisons(
    recipes: list[Recipe],
    results: dict[str, dict[str, Any]],
    predictions: dict[str, np.ndarray],
    evaluation: PreparedData,
    bootstrap: BootstrapSettings,
) -> list[dict[str, Any]]:
    """Return one comparison entry per recipe with an intervention, in recipe order."""
    entries = []
    for recipe in recipes:
        if recipe.intervention is None:
            continue
        reference = reference_recipe(recipe, recipes)
        entry: dict[str, Any] = {
            "variant": recipe.name,
            "reference": reference.name if reference is not None else None,
            "intervention": recipe.intervention.model_dump(mode="json"),
        }
        reason = _missing_reason(recipe, reference, results, predictions)
        if reason is not None:
            entry.update({"status": "skipped", "reason": reason})
            entries.append(entry)
            continue
        change = compare_predictions(
            evaluation.labels,
            predictions[reference.name],
            predictions[recipe.name],
            evaluation.groups,
            n_classes=len(evaluation.class_names),
            class_names=evaluation.class_names,
            positive_class=evaluation.positive_class,
            bootstrap=bootstrap,
        )
        entry.update(
            {
                "status": "compared",
                "accuracy": {
                    "variant": results[recipe.name]["metrics"]["overall"]["accuracy"],
                    "reference": results[reference.name]["metrics"]["overall"]["accuracy"],
                },
                "change": {"overall": change["overall"], "gaps": change["gaps"]},
                "warnings": change.get("warnings", []),
            }
        )
        entries.append(entry)
    return entries


def _missing_reason(
    recipe: Recipe,
    reference: Recipe | None,
    results: dict[str, dict[str, Any]],
    predictions: dict[str, np.ndarray],
) -> str | None:
    if reference is None:
        steps = ", ".join(step.method for step in recipe.steps)
        return f"no recipe has the same steps ({steps}) without an intervention; add one to compare against"
    for name in (recipe.name, reference.name):
        if results.get(name, {}).get("status") != "succeeded":
            return f"variant '{name}' failed, so there is nothing to compare"
        if name not in predictions:
            return f"the predictions of variant '{name}' are not available"
    return None
