"""Training rows as torch tensors: inputs, labels, group codes, row weights and the validation split.

Rows come from the job's training table only (`CompressionContext.training`); the evaluation
table never reaches this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from workers.compression.base import CompressionError

if TYPE_CHECKING:
    import torch

    from workers.data import PreparedData

logger = logging.getLogger(__name__)

MIN_VALIDATION_ROWS = 1


@dataclass
class Batch:
    """One mini-batch on the training device."""

    inputs: list[torch.Tensor]
    labels: torch.Tensor
    groups: torch.Tensor
    weights: torch.Tensor
    index: torch.Tensor  # row positions in the full training table
    targets: torch.Tensor | None = None  # teacher logits, for distillation


@dataclass
class TrainingRows:
    """All training rows on the device, with the group codes of one sensitive attribute."""

    inputs: list[torch.Tensor]
    labels: torch.Tensor
    groups: torch.Tensor
    group_names: list[str]
    weights: torch.Tensor
    attribute: str
    rows: int
    n_classes: int
    targets: torch.Tensor | None = None

    def batches(self, index: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> Iterator[Batch]:
        """Yield mini-batches over the rows at `index`, shuffled when `rng` is given."""
        import torch

        order = rng.permutation(index) if rng is not None else index
        device = self.labels.device
        for start in range(0, len(order), batch_size):
            chosen = torch.from_numpy(order[start : start + batch_size]).to(device)
            yield Batch(
                inputs=[tensor[chosen] for tensor in self.inputs],
                labels=self.labels[chosen],
                groups=self.groups[chosen],
                weights=self.weights[chosen],
                index=chosen,
                targets=self.targets[chosen] if self.targets is not None else None,
            )


def training_rows(data: PreparedData, attribute: str | None, device: torch.device) -> TrainingRows:
    """Move the prepared training table to `device`, with the codes of `attribute` (default: the first)."""
    import torch

    # NOTE: the whole table is copied to the device at once, which suits tabular data; a large image
    # table may not fit in GPU memory.

    if not data.groups:
        raise CompressionError("the training table has no sensitive column; data.sensitive names none")
    name = attribute if attribute is not None else next(iter(data.groups))
    if name not in data.groups:
        raise CompressionError(
            f"sensitive attribute '{name}' not found in the training table; available: {', '.join(data.groups)}"
        )
    codes, names = data.groups[name]
    return TrainingRows(
        inputs=[torch.from_numpy(np.ascontiguousarray(array)).to(device) for array in data.inputs.values()],
        labels=torch.from_numpy(np.asarray(data.labels, dtype=np.int64)).to(device),
        groups=torch.from_numpy(np.asarray(codes, dtype=np.int64)).to(device),
        group_names=list(names),
        weights=torch.ones(data.rows, dtype=torch.float32, device=device),
        attribute=name,
        rows=data.rows,
        n_classes=len(data.class_names),
    )


def split_rows(rows: int, validation_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row positions into (training, validation) at random, seeded; both sorted."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows)
    validation_rows = max(MIN_VALIDATION_ROWS, int(round(rows * validation_share)))
    if validation_rows >= rows:
        raise CompressionError(
            f"the training table has {rows} rows, too few to hold out a validation share of "
            f"{validation_share}; add rows to data.training or lower validation_share"
        )
    return np.sort(order[validation_rows:]), np.sort(order[:validation_rows])
