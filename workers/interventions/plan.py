"""Placing a fairness intervention before, during or after a recipe's compression steps.

- before: the intervention acts on the base model, then the steps compress the result. The
  training interventions fine-tune the base model with it for `epochs`. fair_pruning removes
  `share` of its weights. Thresholds are fitted on the base model and kept for the compressed one.
- during: the steps apply it. Training interventions act inside the recipe's finetune and distill
  steps; fair_pruning replaces the magnitude criterion of its prune steps; thresholds are fitted on
  the model before the recipe's trailing quantize_dynamic, quantize_static or fp16 steps (after
  the last step when there are none, which is the same as after).
- after: the intervention acts on the compressed model, as before acts on the base.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workers.compression import CompressionContext, get_method
from workers.compression.convert import ONNX_ONLY_METHODS

if TYPE_CHECKING:
    import onnx

    from workers.spec import Recipe

logger = logging.getLogger(__name__)


@dataclass
class BuiltVariant:
    """A recipe's model, the record of its steps, and its threshold rules when it has any."""

    model: onnx.ModelProto
    steps: list[dict[str, Any]]
    thresholds: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


def build_with_intervention(recipe: Recipe, base_model: onnx.ModelProto, context: CompressionContext) -> BuiltVariant:
    """Apply the recipe's steps with its intervention at its placement."""
    intervention = recipe.intervention
    placement = intervention.placement
    built = BuiltVariant(model=base_model, steps=[])
    if placement == "before":
        _apply_alone(built, intervention, context)

    step_context = dataclasses.replace(context, intervention=intervention if placement == "during" else None)
    fit_at = _thresholds_position(recipe) if placement == "during" and intervention.method == "thresholds" else None
    for index, step in enumerate(recipe.steps):
        if index == fit_at:
            _fit_thresholds(built, intervention, context, placement)
        started = time.perf_counter()
        built.model = _run_step(step, built.model, step_context, intervention if placement == "during" else None)
        built.steps.append({"method": step.method, "options": step.options(), "seconds": time.perf_counter() - started})

    if placement == "during" and intervention.method == "thresholds" and fit_at is None:
        _fit_thresholds(built, intervention, context, placement)
        built.warnings.append(
            "thresholds placed during compression were fitted after the last step, because the recipe has no "
            "trailing quantize_dynamic, quantize_static or fp16 step; this is the same as placing them after"
        )
    if placement == "after":
        _apply_alone(built, intervention, context)
    return built


def _thresholds_position(recipe: Recipe) -> int | None:
    """Return the index of the first step of the recipe's trailing ONNX-only steps, or None."""
    position = None
    for index in range(len(recipe.steps) - 1, -1, -1):
        if recipe.steps[index].method not in ONNX_ONLY_METHODS:
            break
        position = index
    return position


def _run_step(step: Any, model: onnx.ModelProto, context: CompressionContext, during: Any | None) -> onnx.ModelProto:
    if during is not None and during.method == "fair_pruning" and step.method == "prune":
        from workers.interventions.fair_pruning import prune_fair

        config = step.config()
        return prune_fair(model, config.sparsity, config.scope, context, during)
    return get_method(step.method).apply(model, step.config(), context)


def _apply_alone(built: BuiltVariant, intervention: Any, context: CompressionContext) -> None:
    """Apply the intervention as a step of its own, on the model as it is now."""
    started = time.perf_counter()
    if intervention.method == "thresholds":
        _fit_thresholds(built, intervention, context, intervention.placement)
        return
    if intervention.method == "fair_pruning":
        from workers.interventions.fair_pruning import remove_biased_weights

        built.model = remove_biased_weights(built.model, context, intervention)
    else:
        built.model = fairness_training(built.model, context, intervention)
    built.steps.append(_intervention_entry(intervention, time.perf_counter() - started))


def fairness_training(model: onnx.ModelProto, context: CompressionContext, intervention: Any) -> onnx.ModelProto:
    """Fine-tune `model` with a training intervention for `intervention.epochs` epochs; export it."""
    import torch

    from workers.compression.convert import export_checked
    from workers.interventions.training import train_with_intervention
    from workers.training import TrainingOptions, to_trainable
    from workers.training.losses import cross_entropy

    torch.manual_seed(context.seed)
    trainable = to_trainable(model, context, intervention.method)
    settings = TrainingOptions(epochs=intervention.epochs).settings(context.seed)
    train_with_intervention(
        trainable, context, settings, cross_entropy, method=intervention.method, intervention=intervention
    )
    trainable.module.to("cpu")
    return export_checked(trainable.module, model, context.work_dir, intervention.method)


def _fit_thresholds(built: BuiltVariant, intervention: Any, context: CompressionContext, placement: str) -> None:
    from workers.interventions.thresholds import fit_threshold_rules

    started = time.perf_counter()
    built.thresholds = fit_threshold_rules(built.model, context, intervention)
    built.thresholds["placement"] = placement
    built.steps.append(_intervention_entry(intervention, time.perf_counter() - started))


def _intervention_entry(intervention: Any, seconds: float) -> dict[str, Any]:
    options = intervention.model_dump(mode="json", exclude={"method"})
    return {"method": intervention.method, "options": options, "seconds": seconds, "intervention": True}
