"""The distill method: student size, widths, accuracy against the teacher, and option checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.workers.compression.helpers import compress
from tests.workers.training.fixtures import accuracy, biased_table, make_context
from workers.compression import CompressionError, get_method
from workers.compression.stats import count_parameters


def test_student_parameter_share_shrinks(teacher, training_data, tmp_path):
    student = compress(teacher, "distill", make_context(tmp_path, training_data), width_ratio=0.25, epochs=2)
    teacher_parameters, _ = count_parameters(teacher)
    student_parameters, _ = count_parameters(student)
    assert student_parameters <= 0.25 * teacher_parameters


def test_student_keeps_teacher_accuracy(teacher, training_data, tmp_path):
    context = make_context(tmp_path, training_data)
    student = compress(
        teacher, "distill", context, width_ratio=0.5, epochs=30, batch_size=32, learning_rate=0.01, patience=5
    )
    held_out = biased_table(2000, seed=5)
    assert accuracy(student, held_out) >= accuracy(teacher, held_out) - 0.02


def test_student_given_widths(teacher, training_data, tmp_path):
    student = compress(teacher, "distill", make_context(tmp_path, training_data), widths=[6, 3], epochs=1)
    weights = [tensor for tensor in student.graph.initializer if len(tensor.dims) == 2]
    assert [min(tensor.dims) for tensor in weights] == [4, 3, 2]
    assert sorted(max(tensor.dims) for tensor in weights)[-1] == 6


def test_student_widths_count_checked(teacher, training_data, tmp_path):
    with pytest.raises(CompressionError, match="one width per hidden layer"):
        compress(teacher, "distill", make_context(tmp_path, training_data), widths=[4], epochs=1)


def test_student_wider_than_teacher(teacher, training_data, tmp_path):
    with pytest.raises(CompressionError, match="more than its 16 outputs"):
        compress(teacher, "distill", make_context(tmp_path, training_data), widths=[32, 4], epochs=1)


@pytest.mark.parametrize(
    "options",
    [
        {"width_ratio": 0.5, "widths": [4, 4]},
        {"width_ratio": 1.0},
        {"widths": [0, 4]},
        {"temperature": 0},
        {"alpha": 1.5},
        {"epochs": 0},
    ],
)
def test_distill_config_rejects_options(options):
    with pytest.raises(ValidationError):
        get_method("distill").config_model.model_validate(options)


def test_distill_default_width_ratio():
    config = get_method("distill").config_model.model_validate({})
    assert config.width_ratio == 0.25
