"""The training loop: Adam over mini-batches, sparsity kept, early stopping on a validation share.

The loop is seeded (weight initialization is the caller's, batch order comes from `seed`), and it
reports every epoch through the context's `log` and `progress`. When it stops, it restores the
weights of the trained epoch with the lowest validation loss. The weights before training are no
candidate, so a fairness intervention that costs validation loss is not undone.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import Field

from workers.compression.base import CompressionContext, CompressionError, MethodConfig
from workers.training.model import SparsityMasks, TrainableModel, torch_threads
from workers.training.rows import Batch, TrainingRows

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

LossFunction = Callable[["torch.Tensor", Batch], "torch.Tensor"]
MIN_IMPROVEMENT = 1e-4


class TrainingOptions(MethodConfig):
    """Options shared by the methods that train."""

    epochs: int = Field(default=3, ge=1, le=1000, description="Most passes over the training rows.")
    batch_size: int = Field(default=256, ge=1, le=1_000_000, description="Rows per optimizer step.")
    learning_rate: float = Field(default=1e-3, gt=0.0, le=1.0, description="Adam learning rate.")
    validation_share: float = Field(
        default=0.1, gt=0.0, lt=0.5, description="Share of the training rows held out for early stopping."
    )
    patience: int = Field(
        default=2, ge=1, le=1000, description="Epochs without a lower validation loss before training stops."
    )

    def settings(self, seed: int) -> TrainSettings:
        return TrainSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            validation_share=self.validation_share,
            patience=self.patience,
            seed=seed,
        )


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int = 256
    learning_rate: float = 1e-3
    validation_share: float = 0.1
    patience: int = 2
    seed: int = 0


class GradientHook(Protocol):
    """Computes the gradients of one step in place of `loss.backward()` (adversarial debiasing), and
    adds a per-row term to the validation loss that early stopping compares."""

    def backward(self, loss: torch.Tensor, logits: torch.Tensor, batch: Batch, parameters: list[torch.Tensor]) -> None:
        ...

    def validation_term(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        ...


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


def weighted_mean(per_row: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (per_row * weights).sum() / weights.sum().clamp_min(1e-12)


def fit(
    model: TrainableModel,
    rows: TrainingRows,
    settings: TrainSettings,
    loss_function: LossFunction,
    *,
    train_index: np.ndarray,
    validation_index: np.ndarray,
    context: CompressionContext,
    method: str,
    hook: GradientHook | None = None,
) -> FitResult:
    """Train `model.module` in place on the rows at `train_index`; return the epoch history."""
    import torch

    if len(train_index) == 0:
        raise CompressionError(f"{method} has no training rows left after holding out the validation share")
    module = model.module
    parameters = [parameter for parameter in module.parameters() if parameter.requires_grad]
    if not parameters:
        raise CompressionError(f"{method} found no trainable parameters in the converted model")
    optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate)
    masks = SparsityMasks(module)
    rng = np.random.default_rng(settings.seed)

    result = FitResult(epochs_run=0, best_epoch=0)
    best_loss = math.inf
    best_state: dict[str, Any] | None = None
    stale = 0
    with torch_threads(module):
        for epoch in range(1, settings.epochs + 1):
            started = time.perf_counter()
            train_loss = _train_epoch(model, rows, settings, loss_function, train_index, rng, optimizer, masks, hook)
            validation_loss, validation_accuracy = evaluate_loss(
                model, rows, validation_index, loss_function, settings, hook=hook
            )
            entry = {
                "epoch": epoch,
                "train_loss": train_loss,
                "validation_loss": validation_loss,
                "validation_accuracy": validation_accuracy,
                "seconds": time.perf_counter() - started,
            }
            result.history.append(entry)
            result.epochs_run = epoch
            _report_epoch(context, method, settings.epochs, entry)

            if validation_loss < best_loss - MIN_IMPROVEMENT:
                best_loss, best_state, stale = validation_loss, copy.deepcopy(module.state_dict()), 0
                result.best_epoch = epoch
            else:
                stale += 1
                if stale >= settings.patience:
                    context.log(f"{method}: early stop after epoch {epoch}; best epoch {result.best_epoch}")
                    break

    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return result


def _train_epoch(
    model: TrainableModel,
    rows: TrainingRows,
    settings: TrainSettings,
    loss_function: LossFunction,
    train_index: np.ndarray,
    rng: np.random.Generator,
    optimizer: torch.optim.Optimizer,
    masks: SparsityMasks,
    hook: GradientHook | None,
) -> float:
    model.module.train()
    total, count = 0.0, 0
    parameters = [group_parameter for group in optimizer.param_groups for group_parameter in group["params"]]
    for batch in rows.batches(train_index, settings.batch_size, rng):
        optimizer.zero_grad(set_to_none=True)
        logits = model.logits(*batch.inputs)
        loss = weighted_mean(loss_function(logits, batch), batch.weights)
        if not bool(loss.isfinite()):
            raise CompressionError(
                "training diverged: the loss became infinite or NaN; lower learning_rate or check data.training"
            )
        if hook is None:
            loss.backward()
        else:
            hook.backward(loss, logits, batch, parameters)
        optimizer.step()
        masks.apply()
        total += float(loss.detach()) * len(batch.labels)
        count += len(batch.labels)
    return total / max(count, 1)


def evaluate_loss(
    model: TrainableModel,
    rows: TrainingRows,
    index: np.ndarray,
    loss_function: LossFunction,
    settings: TrainSettings,
    *,
    hook: GradientHook | None = None,
) -> tuple[float, float]:
    """Return the weighted loss (with the hook's validation term) and the accuracy on the rows at `index`."""
    import torch

    model.module.eval()
    loss_sum, weight_sum, correct = 0.0, 0.0, 0
    with torch.no_grad():
        for batch in rows.batches(index, max(settings.batch_size, 1024), None):
            logits = model.logits(*batch.inputs)
            per_row = loss_function(logits, batch)
            if hook is not None:
                per_row = per_row + hook.validation_term(logits, batch)
            loss_sum += float((per_row * batch.weights).sum())
            weight_sum += float(batch.weights.sum())
            correct += int((logits.argmax(dim=1) == batch.labels).sum())
    return loss_sum / max(weight_sum, 1e-12), correct / max(len(index), 1)


def _report_epoch(context: CompressionContext, method: str, epochs: int, entry: dict[str, Any]) -> None:
    message = (
        f"{method}: epoch {entry['epoch']}/{epochs} train loss {entry['train_loss']:.4f}, validation loss "
        f"{entry['validation_loss']:.4f}, validation accuracy {entry['validation_accuracy']:.4f} "
        f"({entry['seconds']:.1f} s)"
    )
    logger.info("%s", message)
    context.log(message)
    context.progress({"event": "training_epoch", "method": method, "epochs": epochs, **entry})
