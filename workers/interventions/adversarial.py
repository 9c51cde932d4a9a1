"""Adversarial debiasing (Zhang, Lemoine and Mitchell, 2018, "Mitigating Unwanted Biases with
Adversarial Learning").

An adversary learns to predict the sensitive group from the model's class probabilities, and,
for equalized odds, from those probabilities together with the true label. The model's gradient is

    grad L_task - proj(grad L_task onto grad L_adv) - strength * grad L_adv

per parameter tensor, so the model never moves in a direction that helps the adversary, and moves
away from it with weight `strength`. The adversary itself descends its own loss at every step.

Early stopping judges an epoch by the task loss plus `strength` times the adversary's advantage:
the entropy of the group distribution minus the adversary's cross-entropy, which is zero when the
adversary does no better than guessing from the group sizes. Without that term, early stopping
would keep the epoch that is least debiased.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from workers.training.rows import Batch, TrainingRows

if TYPE_CHECKING:
    import torch

    from workers.training.model import TrainableModel

logger = logging.getLogger(__name__)

ADVERSARY_HIDDEN = 16
ADVERSARY_LEARNING_RATE = 5e-3
WARM_UP_BATCH_SIZE = 512
EPSILON = 1e-12


class AdversarialHook:
    """The gradient step of adversarial debiasing, with its adversary network and optimizer."""

    def __init__(
        self, *, n_classes: int, n_groups: int, objective: str, strength: float, device: torch.device, seed: int
    ) -> None:
        import torch

        self.n_classes = n_classes
        self.objective = objective
        self.strength = strength
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        width = n_classes * (1 + n_classes) if objective == "equalized_odds" else n_classes
        self.adversary = torch.nn.Sequential(
            torch.nn.Linear(width, ADVERSARY_HIDDEN), torch.nn.ReLU(), torch.nn.Linear(ADVERSARY_HIDDEN, n_groups)
        ).to(device)
        torch.random.set_rng_state(generator_state)
        self.optimizer = torch.optim.Adam(self.adversary.parameters(), lr=ADVERSARY_LEARNING_RATE)
        self.last_adversary_loss = float("nan")
        self.group_entropy = 0.0

    def features(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the adversary's input: class probabilities, and for equalized odds their products
        with the one-hot label."""
        import torch

        probabilities = torch.softmax(logits, dim=1)
        if self.objective != "equalized_odds":
            return probabilities
        onehot = torch.nn.functional.one_hot(labels, self.n_classes).to(probabilities.dtype)
        joint = (probabilities[:, :, None] * onehot[:, None, :]).flatten(1)
        return torch.cat([probabilities, joint], dim=1)

    def adversary_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        import torch

        return torch.nn.functional.cross_entropy(self.adversary(self.features(logits, batch.labels)), batch.groups)

    def warm_up(self, model: TrainableModel, rows: TrainingRows, index: np.ndarray, seed: int) -> None:
        """Train the adversary for one pass against the model as it is, so the first steps face a real one."""
        import torch

        shares = np.bincount(rows.groups.cpu().numpy()[index], minlength=len(rows.group_names)) / max(len(index), 1)
        self.group_entropy = float(-np.sum(shares[shares > 0] * np.log(shares[shares > 0])))
        model.module.eval()
        for batch in rows.batches(index, WARM_UP_BATCH_SIZE, np.random.default_rng(seed)):
            with torch.no_grad():
                logits = model.logits(*batch.inputs)
            self._adversary_step(logits, batch)

    def validation_term(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Return each row's share of the early-stopping penalty: strength * (entropy - adversary loss)."""
        import torch

        features = self.features(logits, batch.labels)
        row_loss = torch.nn.functional.cross_entropy(self.adversary(features), batch.groups, reduction="none")
        return self.strength * (self.group_entropy - row_loss)

    def backward(
        self, loss: torch.Tensor, logits: torch.Tensor, batch: Batch, parameters: list[torch.Tensor]
    ) -> None:
        import torch

        adversary_loss = self.adversary_loss(logits, batch)
        task_grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        adversary_grads = torch.autograd.grad(adversary_loss, parameters, retain_graph=True, allow_unused=True)
        for parameter, task, adversary in zip(parameters, task_grads, adversary_grads):
            if task is None and adversary is None:
                parameter.grad = None
                continue
            task = torch.zeros_like(parameter) if task is None else task
            if adversary is None:
                parameter.grad = task
                continue
            unit = adversary / (adversary.norm() + EPSILON)
            parameter.grad = task - (task * unit).sum() * unit - self.strength * adversary
        self._adversary_step(logits.detach(), batch)

    def _adversary_step(self, logits: torch.Tensor, batch: Batch) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.adversary_loss(logits, batch)
        loss.backward()
        self.optimizer.step()
        self.last_adversary_loss = float(loss.detach())
