"""Fixtures of the intervention tests: a biased table, a trained MLP and its prepared training data."""

from __future__ import annotations

import onnx
import pandas as pd
import pytest

from tests.workers.training.fixtures import biased_table, export_onnx, prepared, train_mlp
from workers.data import PreparedData


@pytest.fixture(scope="session")
def train_table() -> pd.DataFrame:
    return biased_table(1200, seed=0)


@pytest.fixture(scope="session")
def teacher(train_table) -> onnx.ModelProto:
    return export_onnx(train_mlp(train_table, hidden=16, seed=0))


@pytest.fixture(scope="session")
def training_data(train_table, teacher) -> PreparedData:
    return prepared(train_table, teacher)
