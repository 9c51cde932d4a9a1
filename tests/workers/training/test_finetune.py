"""The finetune method on a tiny MLP: accuracy recovery, kept sparsity, seeding, epochs and errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.workers.compression.helpers import compress
from tests.workers.training.fixtures import accuracy, make_context, zero_weights
from workers.compression import CompressionError


@pytest.fixture(scope="module")
def pruned(teacher, tmp_path_factory) -> onnx.ModelProto:
    context = make_context(tmp_path_factory.mktemp("prune"), None)
    return compress(teacher, "prune", context, scope="global", sparsity=0.9)


def test_finetune_recovers_pruned_accuracy(pruned, training_data, train_table, tmp_path):
    tuned = compress(pruned, "finetune", make_context(tmp_path, training_data), epochs=8, learning_rate=0.01)
    assert accuracy(tuned, train_table) > accuracy(pruned, train_table) + 0.02


def test_finetune_keeps_pruned_weights_zero(pruned, training_data, tmp_path):
    tuned = compress(pruned, "finetune", make_context(tmp_path, training_data), epochs=3)
    assert zero_weights(tuned) == zero_weights(pruned)


def test_finetune_same_seed_same_weights(pruned, training_data, tmp_path):
    first = compress(pruned, "finetune", make_context(tmp_path / "a", training_data), epochs=2)
    second = compress(pruned, "finetune", make_context(tmp_path / "b", training_data), epochs=2)
    for left, right in zip(first.graph.initializer, second.graph.initializer):
        assert np.array_equal(onnx.numpy_helper.to_array(left), onnx.numpy_helper.to_array(right)), left.name


def test_finetune_reports_every_epoch(pruned, training_data, tmp_path):
    events: list = []
    messages: list = []
    compress(pruned, "finetune", make_context(tmp_path, training_data, events=events, messages=messages), epochs=3, patience=5)
    epochs = [event["epoch"] for event in events if event["event"] == "training_epoch"]
    assert epochs == [1, 2, 3]
    assert all("validation_loss" in event for event in events)
    assert sum("epoch" in message for message in messages) >= 3


def test_finetune_stops_early_without_gain(teacher, training_data, tmp_path):
    events: list = []
    # A learning rate this large makes the validation loss worse after the first epoch.
    compress(
        teacher, "finetune", make_context(tmp_path, training_data, events=events), epochs=30, patience=1, learning_rate=0.5
    )
    assert len(events) < 30


def test_finetune_rejects_quantized_model(teacher, training_data, tmp_path):
    quantized = compress(teacher, "quantize_dynamic", make_context(tmp_path, training_data))
    with pytest.raises(CompressionError, match="before the quantize_dynamic"):
        compress(quantized, "finetune", make_context(tmp_path, training_data), epochs=1)


def test_finetune_needs_training_table(teacher, tmp_path):
    with pytest.raises(CompressionError, match="data.training"):
        compress(teacher, "finetune", make_context(tmp_path, None), epochs=1)


def test_finetune_rejects_tiny_table(teacher, training_data, tmp_path):
    tiny = training_data.take(np.arange(1))
    with pytest.raises(CompressionError, match="validation share"):
        compress(teacher, "finetune", make_context(tmp_path, tiny), epochs=1)
