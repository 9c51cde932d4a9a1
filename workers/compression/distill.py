"""Knowledge distillation into a smaller student (Hinton, Vinyals and Dean, 2015).

The teacher is the model this step receives. The student is the teacher's architecture with its
hidden layers narrowed by structured pruning (torch-pruning, L1 importance), either to `width_ratio`
of their neurons or channels or to the given `widths`, so it starts from the teacher's strongest
units. It is then trained on the training table with

    alpha * T^2 * KL(teacher || student, both at temperature T) + (1 - alpha) * cross-entropy(labels)

and exported to ONNX. With a fairness intervention placed "during", the training applies it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field, field_validator, model_validator

from workers.compression.base import CompressionContext, CompressionError, Method
from workers.training.loop import TrainingOptions

if TYPE_CHECKING:
    import onnx
    import torch

logger = logging.getLogger(__name__)

TEACHER_BATCH_SIZE = 4096


class Config(TrainingOptions):
    """Options of the distill method: the student's size and the distillation loss."""

    width_ratio: float | None = Field(
        default=None,
        description="Share of each hidden layer's neurons or channels the student keeps, between 0 and 1; "
        "default 0.25 when widths is not given.",
    )
    widths: list[int] | None = Field(
        default=None, description="Neurons or channels of each hidden weight layer of the student, in order."
    )
    temperature: float = Field(default=4.0, gt=0.0, le=100.0, description="Softmax temperature of the soft targets.")
    alpha: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Weight of the soft-target loss; 1 - alpha weighs the labels."
    )
    epochs: int = Field(default=10, ge=1, le=1000, description="Most passes over the training rows.")
    learning_rate: float = Field(default=2e-3, gt=0.0, le=1.0, description="Adam learning rate.")

    @field_validator("width_ratio")
    @classmethod
    def _open_unit_interval(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 < value < 1.0:
            raise ValueError(f"width_ratio must be greater than 0 and less than 1, got {value}")
        return value

    @field_validator("widths")
    @classmethod
    def _positive_widths(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(width < 1 for width in value)):
            raise ValueError(f"widths must list at least one width, each 1 or more, got {value}")
        return value

    @model_validator(mode="after")
    def _one_size_rule(self) -> Config:
        if self.width_ratio is not None and self.widths is not None:
            raise ValueError("give either width_ratio or widths for the student, not both")
        if self.width_ratio is None and self.widths is None:
            self.width_ratio = 0.25
        return self


def apply(model: onnx.ModelProto, config: Config, context: CompressionContext) -> onnx.ModelProto:
    """Build the student from the teacher, distill it on the training table and export it."""
    import torch

    from workers.compression.convert import export_checked
    from workers.interventions.training import train_with_intervention
    from workers.training import to_trainable
    from workers.training.losses import distillation_loss

    torch.manual_seed(context.seed)
    teacher = to_trainable(model, context, "distill")
    targets = teacher_logits(teacher, context)
    student = to_trainable(model, context, "distill")
    before = student.parameter_count()
    narrow_student(student.module, model, config, context)
    after = student.parameter_count()
    context.log(f"distill: student has {after} parameters, {after / before:.1%} of the teacher's {before}")

    result = train_with_intervention(
        student,
        context,
        config.settings(context.seed),
        distillation_loss(config.temperature, config.alpha),
        method="distill",
        intervention=context.intervention,
        targets=targets,
    )
    context.log(f"distill: {result.epochs_run} epochs, weights of epoch {result.best_epoch} kept")
    student.module.to("cpu")
    return export_checked(student.module, model, context.work_dir, "distill")


def teacher_logits(teacher, context: CompressionContext) -> torch.Tensor:
    """Return the teacher's class logits for every training row, on the teacher's device."""
    import torch

    arrays = list(context.training.inputs.values())
    chunks = []
    teacher.module.eval()
    with torch.no_grad():
        for start in range(0, context.training.rows, TEACHER_BATCH_SIZE):
            batch = [torch.from_numpy(np.ascontiguousarray(array[start : start + TEACHER_BATCH_SIZE])) for array in arrays]
            chunks.append(teacher.logits(*[tensor.to(teacher.device) for tensor in batch]))
    return torch.cat(chunks).detach()


def narrow_student(module: torch.nn.Module, model: onnx.ModelProto, config: Config, context: CompressionContext) -> None:
    """Remove neurons or channels from the hidden layers of `module` in place (torch-pruning, L1)."""
    import torch
    import torch_pruning

    from workers.compression.convert import example_inputs, weight_layers
    from workers.compression.prune_structured import _output_layers

    output_layers = _output_layers(module)
    hidden = [(name, layer) for name, layer in weight_layers(module) if layer not in output_layers]
    if not hidden:
        raise CompressionError(
            "distill found no hidden Linear or convolution layer to narrow: every weight layer produces a model "
            "output; distillation into a narrower student needs a hidden layer"
        )
    ratios = _layer_ratios(hidden, config)
    device = next(module.parameters()).device
    examples = tuple(tensor.to(device) for tensor in example_inputs(model, seed=context.seed))
    try:
        pruner = torch_pruning.pruner.MetaPruner(
            module,
            examples,
            importance=torch_pruning.importance.MagnitudeImportance(p=1),
            pruning_ratio=0.0,
            pruning_ratio_dict=ratios,
            ignored_layers=list(output_layers),
        )
        pruner.step()
        with torch.no_grad():
            module(*examples)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as error:
        raise CompressionError(f"torch-pruning failed to narrow the student: {error}; try prune or low_rank") from error


def _layer_ratios(hidden: list, config: Config) -> dict:
    """Map each hidden layer to the share of its outputs to remove."""
    if config.widths is None:
        return {layer: 1.0 - config.width_ratio for _, layer in hidden}
    if len(config.widths) != len(hidden):
        names = ", ".join(f"{name} ({_width(layer)})" for name, layer in hidden)
        raise CompressionError(
            f"distill widths lists {len(config.widths)} widths but the model has {len(hidden)} hidden layers: "
            f"{names}; give one width per hidden layer"
        )
    ratios = {}
    for (name, layer), width in zip(hidden, config.widths):
        full = _width(layer)
        if width > full:
            raise CompressionError(
                f"distill width {width} for layer {name} is more than its {full} outputs; a student is narrower"
            )
        ratios[layer] = 1.0 - width / full
    return ratios


def _width(layer) -> int:
    return int(layer.weight.shape[0])


METHOD = Method(
    name="distill",
    config_model=Config,
    apply=apply,
    trains=True,
    summary="train a narrower copy of the model on the teacher's soft targets and the labels",
)
