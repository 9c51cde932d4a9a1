"""Fixtures of the intervention tests: the biased table, trained MLP and prepared training data of the
training tests."""

from tests.workers.training.conftest import teacher, train_table, training_data

__all__ = ["teacher", "train_table", "training_data"]
