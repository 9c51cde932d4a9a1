"""Fixtures of the compression method tests: tiny trained models, their data and a context factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.workers.compression.helpers import export_module
from workers.compression import CompressionContext

MLP_FEATURES = 20
MLP_HIDDEN = 32
CLASSES = 3
IMAGE_SIDE = 8
ROWS = 512


def _train(module: Any, features: np.ndarray, labels: np.ndarray, steps: int) -> None:
    import torch

    inputs = torch.from_numpy(features)
    targets = torch.from_numpy(labels)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    # Tiny models train much faster on one thread: with more, thread synchronization dominates each step.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module.train()
        for _ in range(steps):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(inputs), targets)
            loss.backward()
            optimizer.step()
        module.eval()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tabular_rows() -> tuple[np.ndarray, np.ndarray]:
    """Features and 3-class labels from a fixed linear teacher."""
    generator = np.random.default_rng(0)
    features = generator.standard_normal((ROWS, MLP_FEATURES)).astype(np.float32)
    teacher = generator.standard_normal((MLP_FEATURES, CLASSES))
    labels = (features @ teacher).argmax(axis=1).astype(np.int64)
    return features, labels


@pytest.fixture(scope="session")
def image_rows() -> tuple[np.ndarray, np.ndarray]:
    """8x8 one-channel images whose class is the third of the image holding a bright blob."""
    generator = np.random.default_rng(1)
    images = generator.normal(scale=0.3, size=(ROWS, 1, IMAGE_SIDE, IMAGE_SIDE)).astype(np.float32)
    labels = generator.integers(0, CLASSES, size=ROWS)
    for row, label in enumerate(labels):
        column = int(label) * 3 + generator.integers(0, 2)
        line = generator.integers(0, IMAGE_SIDE - 1)
        images[row, 0, line : line + 2, column : column + 2] += 2.0
    return images, labels.astype(np.int64)


@pytest.fixture(scope="session")
def mlp_model(tabular_rows) -> onnx.ModelProto:
    """A trained two-layer MLP (20 -> 32 -> 3) with input 'features' and output 'logits'."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(MLP_FEATURES, MLP_HIDDEN), torch.nn.ReLU(), torch.nn.Linear(MLP_HIDDEN, CLASSES)
    )
    _train(module, *tabular_rows, steps=300)
    return export_module(module, (torch.randn(2, MLP_FEATURES),), ["features"])


@pytest.fixture(scope="session")
def conv_model(image_rows) -> onnx.ModelProto:
    """A trained conv net (two 3x3 convolutions, max pooling, one Linear) on 1x8x8 images, input 'image'."""
    import torch

    class ConvNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
            self.head = torch.nn.Linear(16 * 2 * 2, CLASSES)

        def forward(self, image):
            hidden = torch.nn.functional.max_pool2d(torch.relu(self.conv1(image)), 2)
            hidden = torch.nn.functional.max_pool2d(torch.relu(self.conv2(hidden)), 2)
            return self.head(torch.flatten(hidden, 1))

    torch.manual_seed(0)
    module = ConvNet()
    _train(module, *image_rows, steps=150)
    return export_module(module, (torch.randn(2, 1, IMAGE_SIDE, IMAGE_SIDE),), ["image"])


@pytest.fixture
def messages() -> list[str]:
    return []


@pytest.fixture
def make_context(tmp_path: Path, messages: list[str]) -> Callable[..., CompressionContext]:
    def make(calibration: dict[str, np.ndarray] | None = None) -> CompressionContext:
        return CompressionContext(
            work_dir=tmp_path / "work", seed=0, calibration=calibration, log=messages.append
        )

    return make
