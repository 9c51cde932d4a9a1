"""Training with a fairness intervention: row weights, resampled rows or an adversary in the loop.

`train_with_intervention` is what the methods that train call (finetune, distill, and the
standalone fairness training run before or after compression). Reweighing weights and resampled
rows are computed on the training split, never on the validation share or the evaluation table.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.compression.base import CompressionContext
from workers.interventions.adversarial import AdversarialHook
from workers.interventions.resampling import balanced_resample
from workers.interventions.reweighing import kamiran_calders_weights
from workers.training import FitResult, TrainableModel, TrainSettings, fit, split_rows, training_rows
from workers.training.loop import LossFunction

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

TRAINING_INTERVENTIONS = ("reweighing", "resampling", "adversarial")


def train_with_intervention(
    model: TrainableModel,
    context: CompressionContext,
    settings: TrainSettings,
    loss_function: LossFunction,
    *,
    method: str,
    intervention: Any | None,
    targets: torch.Tensor | None = None,
) -> FitResult:
    """Train `model` in place on the context's training table, applying `intervention` when it trains.

    `intervention` is the recipe's Intervention (method, attribute, objective, strength) or None;
    fair_pruning and thresholds do not change training, so they train as None does.
    """
    attribute = getattr(intervention, "attribute", None)
    rows = training_rows(context.training, attribute, model.device)
    rows.targets = targets
    train_index, validation_index = split_rows(rows.rows, settings.validation_share, settings.seed)
    labels = context.training.labels
    groups = context.training.groups[rows.attribute][0]

    kind = getattr(intervention, "method", None)
    hook = None
    if kind == "reweighing":
        weights = np.zeros(rows.rows, dtype=np.float32)
        weights[train_index] = kamiran_calders_weights(labels[train_index], groups[train_index])
        weights[validation_index] = kamiran_calders_weights(labels[validation_index], groups[validation_index])
        rows.weights = _tensor(weights, model.device)
        context.log(f"{method}: reweighing by {rows.attribute} and label, weights {_weight_range(weights)}")
    elif kind == "resampling":
        before = train_index.size
        train_index = balanced_resample(train_index, labels, groups, np.random.default_rng(settings.seed))
        context.log(f"{method}: resampling by {rows.attribute} and label grew {before} training rows to {train_index.size}")
    elif kind == "adversarial":
        hook = AdversarialHook(
            n_classes=rows.n_classes,
            n_groups=len(rows.group_names),
            objective=intervention.objective,
            strength=intervention.strength,
            device=model.device,
            seed=settings.seed,
        )
        hook.warm_up(model, rows, train_index, settings.seed)
        context.log(f"{method}: adversarial debiasing on {rows.attribute} ({intervention.objective})")

    result = fit(
        model,
        rows,
        settings,
        loss_function,
        train_index=train_index,
        validation_index=validation_index,
        context=context,
        method=method,
        hook=hook,
    )
    logger.info("%s trained %s epochs, best epoch %s", method, result.epochs_run, result.best_epoch)
    return result


def _tensor(values: np.ndarray, device: torch.device) -> torch.Tensor:
    import torch

    return torch.from_numpy(values).to(device)


def _weight_range(weights: np.ndarray) -> str:
    return f"{float(weights.min()):.3f} to {float(weights.max()):.3f}"
