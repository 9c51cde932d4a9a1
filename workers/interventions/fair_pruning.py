"""Fairness-aware pruning: choose the weights to remove by a fairness objective as well as accuracy.

Each weight gets a keep score from two saliencies, measured on rows of the training table:

- per-group importance (after FairPrune, Wu et al., 2022): the Optimal Brain Damage saliency
  w^2 * F / 2, where F is the mean squared gradient of the cross-entropy over one group's rows.
  It is normalized within each group and averaged over the groups, so a small group's important
  weights count as much as a large group's;
- gap saliency: the first-order change of a soft fairness gap when the weight is set to zero,
  -w * d(gap)/dw, where the gap is the equalized odds difference (or demographic parity
  difference) of the predicted positive probabilities. Weights whose removal would widen the gap
  score higher, weights whose removal narrows it score lower.

keep = importance / mean(importance) + strength * gap_change / mean(|gap_change|), and the weights
with the lowest scores are zeroed. Placed "during" compression this replaces the magnitude
criterion of a prune step, in rounds that raise the sparsity geometrically and measure again after
each. Placed before or after, it removes `share` of the remaining weights in one round, as a
debiasing step on a trained model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.compression.base import CompressionContext, CompressionError
from workers.training import TrainableModel, to_trainable, training_rows
from workers.training.model import torch_threads

if TYPE_CHECKING:
    import onnx
    import torch

    from workers.training.rows import TrainingRows

logger = logging.getLogger(__name__)

SALIENCY_ROWS = 4096
SALIENCY_BATCH_SIZE = 128
PRUNING_ROUNDS = 5
EPSILON = 1e-12


def prune_fair(
    model: onnx.ModelProto, sparsity: float, scope: str, context: CompressionContext, intervention: Any
) -> onnx.ModelProto:
    """Prune `sparsity` of the Linear and convolution weights by the fair keep score; export to ONNX."""
    from workers.compression.convert import export_checked

    trainable, rows, sample = _prepare(model, context, intervention)
    layers = _layers(trainable)
    with torch_threads(trainable.module):
        for round_index in range(1, PRUNING_ROUNDS + 1):
            target = 1.0 - (1.0 - sparsity) ** (round_index / PRUNING_ROUNDS)
            scores = keep_scores(trainable, rows, sample, intervention)
            _zero_lowest(layers, scores, target, scope)
    zeros, total = _zero_count(layers)
    context.log(f"fair_pruning: {zeros} of {total} weights are zero ({zeros / total:.1%}), {scope} scope")
    trainable.module.to("cpu")
    return export_checked(trainable.module, model, context.work_dir, "fair_pruning")


def remove_biased_weights(model: onnx.ModelProto, context: CompressionContext, intervention: Any) -> onnx.ModelProto:
    """Zero `intervention.share` of the non-zero weights with the lowest fair keep score; export to ONNX."""
    from workers.compression.convert import export_checked

    trainable, rows, sample = _prepare(model, context, intervention)
    layers = _layers(trainable)
    zeros, total = _zero_count(layers)
    target = (zeros + intervention.share * (total - zeros)) / total
    with torch_threads(trainable.module):
        scores = keep_scores(trainable, rows, sample, intervention)
        _zero_lowest(layers, scores, target, "global")
    after, _ = _zero_count(layers)
    context.log(f"fair_pruning: removed {after - zeros} weights; {after} of {total} are zero")
    trainable.module.to("cpu")
    return export_checked(trainable.module, model, context.work_dir, "fair_pruning")


def _prepare(
    model: onnx.ModelProto, context: CompressionContext, intervention: Any
) -> tuple[TrainableModel, TrainingRows, np.ndarray]:
    import torch

    torch.manual_seed(context.seed)
    trainable = to_trainable(model, context, "fair_pruning")
    rows = training_rows(context.training, intervention.attribute, trainable.device)
    if rows.n_classes != 2:
        raise CompressionError(
            f"fair_pruning measures the gap of a binary classifier's positive rate; this model has {rows.n_classes} "
            "classes"
        )
    rng = np.random.default_rng(context.seed)
    sample = np.sort(rng.choice(rows.rows, size=min(rows.rows, SALIENCY_ROWS), replace=False))
    return trainable, rows, sample


def _layers(trainable: TrainableModel) -> list[torch.nn.Module]:
    from workers.compression.convert import weight_layers

    layers = [layer for _, layer in weight_layers(trainable.module)]
    if not layers:
        raise CompressionError("fair_pruning found no Linear or convolution layer to prune")
    return layers


def keep_scores(trainable: TrainableModel, rows: TrainingRows, sample: np.ndarray, intervention: Any) -> list:
    """Return one keep-score tensor per weight layer (higher: keep)."""
    layers = _layers(trainable)
    importance = _group_importance(trainable, rows, sample, layers)
    gap_change = _gap_change(trainable, rows, sample, layers, intervention.objective)
    importance_scale = _mean(importance, absolute=False)
    gap_scale = _mean(gap_change, absolute=True)
    return [
        part / importance_scale + intervention.strength * change / gap_scale
        for part, change in zip(importance, gap_change)
    ]


def _group_importance(trainable: TrainableModel, rows: TrainingRows, sample: np.ndarray, layers: list) -> list:
    """Per-group Optimal Brain Damage saliency, each group's normalized to sum 1, averaged over groups."""
    import torch

    trainable.module.eval()
    sample_groups = rows.groups[torch.from_numpy(sample).to(rows.groups.device)].cpu().numpy()
    totals = [torch.zeros_like(layer.weight) for layer in layers]
    present = 0
    for group in range(len(rows.group_names)):
        members = sample[sample_groups == group]
        if members.size == 0:
            continue
        fisher = [torch.zeros_like(layer.weight) for layer in layers]
        batches = 0
        for batch in rows.batches(members, SALIENCY_BATCH_SIZE, None):
            loss = torch.nn.functional.cross_entropy(trainable.logits(*batch.inputs), batch.labels)
            grads = torch.autograd.grad(loss, [layer.weight for layer in layers])
            for accumulator, grad in zip(fisher, grads):
                accumulator += grad.detach() ** 2
            batches += 1
        saliency = [0.5 * layer.weight.detach() ** 2 * (part / batches) for layer, part in zip(layers, fisher)]
        group_total = sum(float(part.sum()) for part in saliency) + EPSILON
        for total, part in zip(totals, saliency):
            total += part / group_total
        present += 1
    return [total / max(present, 1) for total in totals]


def _gap_change(
    trainable: TrainableModel, rows: TrainingRows, sample: np.ndarray, layers: list, objective: str
) -> list:
    """First-order change of the soft gap when each weight is set to zero: -w * d(gap)/dw."""
    import torch

    (batch,) = list(rows.batches(sample, sample.size, None))
    probabilities = torch.softmax(trainable.logits(*batch.inputs), dim=1)[:, 1]
    gap = soft_gap(probabilities, batch.labels, batch.groups, len(rows.group_names), objective)
    grads = torch.autograd.grad(gap, [layer.weight for layer in layers], allow_unused=True)
    changes = []
    for layer, grad in zip(layers, grads):
        grad = torch.zeros_like(layer.weight) if grad is None else grad
        changes.append(-(layer.weight.detach() * grad.detach()))
    return changes


def soft_gap(
    probabilities: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, n_groups: int, objective: str
) -> torch.Tensor:
    """Return the largest between-group difference of mean positive probability: within each label for
    equalized odds (soft TPR and FPR), over all rows for demographic parity."""
    import torch

    label_sets = [labels == 0, labels == 1] if objective == "equalized_odds" else [torch.ones_like(labels, dtype=torch.bool)]
    gaps = []
    for within in label_sets:
        means = [
            probabilities[within & (groups == group)].mean()
            for group in range(n_groups)
            if bool((within & (groups == group)).any())
        ]
        if len(means) >= 2:
            stacked = torch.stack(means)
            gaps.append(stacked.max() - stacked.min())
    if not gaps:
        return probabilities.sum() * 0.0
    return torch.stack(gaps).max()


def _zero_lowest(layers: list, scores: list, target: float, scope: str) -> None:
    """Zero weights with the lowest scores until each layer (local) or all layers (global) reach `target`."""
    import torch

    with torch.no_grad():
        if scope == "local":
            for layer, score in zip(layers, scores):
                _zero_in(layer.weight, score, target)
            return
        flat_weights = torch.cat([layer.weight.reshape(-1) for layer in layers])
        flat_scores = torch.cat([score.reshape(-1) for score in scores])
        mask = _keep_mask(flat_weights, flat_scores, target)
        offset = 0
        for layer in layers:
            count = layer.weight.numel()
            layer.weight.mul_(mask[offset : offset + count].reshape(layer.weight.shape))
            offset += count


def _zero_in(weight: torch.Tensor, score: torch.Tensor, target: float) -> None:
    mask = _keep_mask(weight.reshape(-1), score.reshape(-1), target)
    weight.mul_(mask.reshape(weight.shape))


def _keep_mask(weights: torch.Tensor, scores: torch.Tensor, target: float) -> torch.Tensor:
    """Keep mask with round(target * n) zeros: zeros stay zero and the lowest-scoring others join them."""
    import torch

    wanted = int(round(target * weights.numel()))
    ranking = torch.where(weights == 0, torch.full_like(scores, -torch.inf), scores)
    mask = torch.ones_like(weights)
    if wanted > 0:
        mask[torch.argsort(ranking)[:wanted]] = 0.0
    return mask


def _zero_count(layers: list) -> tuple[int, int]:
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)
    total = sum(layer.weight.numel() for layer in layers)
    return zeros, total


def _mean(parts: list, *, absolute: bool) -> float:
    values = [part.abs() if absolute else part for part in parts]
    count = sum(value.numel() for value in values)
    return float(sum(float(value.sum()) for value in values)) / max(count, 1) + EPSILON
