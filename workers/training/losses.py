"""Per-row losses on class logits: cross-entropy, and the distillation mix of soft and hard targets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.training.rows import Batch

if TYPE_CHECKING:
    import torch


def cross_entropy(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Return the cross-entropy of each row against its label."""
    import torch

    return torch.nn.functional.cross_entropy(logits, batch.labels, reduction="none")


def distillation_loss(temperature: float, alpha: float):
    """Build the loss alpha * T^2 * KL(teacher || student at temperature T) + (1 - alpha) * cross-entropy.

    The T^2 factor keeps the soft-target gradients on the scale of the hard-target ones (Hinton,
    Vinyals and Dean, 2015). The batch carries the teacher's logits in `targets`.
    """
    import torch

    def loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        if batch.targets is None:
            raise ValueError("distillation needs the teacher's logits in batch.targets")
        student = torch.nn.functional.log_softmax(logits / temperature, dim=1)
        teacher = torch.nn.functional.log_softmax(batch.targets / temperature, dim=1)
        soft = (teacher.exp() * (teacher - student)).sum(dim=1) * temperature**2
        hard = torch.nn.functional.cross_entropy(logits, batch.labels, reduction="none")
        return alpha * soft + (1.0 - alpha) * hard

    return loss
