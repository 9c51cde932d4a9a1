"""Training of converted ONNX classifiers in torch, on the job's training table only.

`to_trainable` converts an ONNX model with onnx2torch and finds the logits of its prediction
output, `training_rows` moves the prepared training table to the device, and `fit` runs Adam with
early stopping on a validation share, keeping pruned weights at zero. The compression methods
`finetune` and `distill` and the training interventions build on these.
"""

from workers.training.loop import FitResult, TrainingOptions, TrainSettings, fit
from workers.training.model import TrainableModel, check_trainable, to_trainable, torch_device
from workers.training.rows import Batch, TrainingRows, split_rows, training_rows

__all__ = [
    "Batch",
    "FitResult",
    "TrainSettings",
    "TrainableModel",
    "TrainingOptions",
    "TrainingRows",
    "check_trainable",
    "fit",
    "split_rows",
    "to_trainable",
    "torch_device",
    "training_rows",
]
