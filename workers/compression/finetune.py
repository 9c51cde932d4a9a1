"""Fine-tuning: train the model further on the training table, to recover accuracy after compression.

Typically placed after prune or low_rank. The model goes to torch through onnx2torch. Adam trains it
with cross-entropy on `data.training` (never the evaluation table), with early stopping on a
validation share. Weights that are exactly zero (pruned) stay zero, and the result is exported back
to ONNX. With a fairness intervention placed "during", the training applies it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from workers.compression.base import CompressionContext, Method
from workers.training.loop import TrainingOptions

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)


class Config(TrainingOptions):
    """Options of the finetune method."""


def apply(model: onnx.ModelProto, config: Config, context: CompressionContext) -> onnx.ModelProto:
    """Train the model for up to `epochs` epochs on the training table and export it."""
    import torch

    from workers.compression.convert import export_checked
    from workers.interventions.training import train_with_intervention
    from workers.training import to_trainable
    from workers.training.losses import cross_entropy

    torch.manual_seed(context.seed)
    trainable = to_trainable(model, context, "finetune")
    result = train_with_intervention(
        trainable,
        context,
        config.settings(context.seed),
        cross_entropy,
        method="finetune",
        intervention=context.intervention,
    )
    context.log(f"finetune: {result.epochs_run} epochs, weights of epoch {result.best_epoch} kept")
    trainable.module.to("cpu")
    return export_checked(trainable.module, model, context.work_dir, "finetune")


METHOD = Method(
    name="finetune",
    config_model=Config,
    apply=apply,
    trains=True,
    summary="train further on data.training (Adam, early stopping), keeping pruned weights at zero",
)
