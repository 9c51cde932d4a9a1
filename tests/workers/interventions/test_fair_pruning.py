"""Fairness-aware pruning: sparsity reached, weights removed by share, and the soft gap it scores."""

from __future__ import annotations

import numpy as np
import pytest

from tests.workers.training.fixtures import make_context, zero_weights
from workers.compression import CompressionError
from workers.compression.stats import count_parameters
from workers.interventions.fair_pruning import prune_fair, remove_biased_weights, soft_gap
from workers.spec import Intervention


def weight_count(model) -> int:
    return sum(int(np.prod(tensor.dims)) for tensor in model.graph.initializer if len(tensor.dims) >= 2)


@pytest.fixture()
def intervention():
    return Intervention(method="fair_pruning", placement="during", attribute="group", strength=0.3)


@pytest.mark.parametrize("scope", ["global", "local"])
def test_fair_prune_reaches_sparsity(teacher, training_data, intervention, tmp_path, scope):
    pruned = prune_fair(teacher, 0.8, scope, make_context(tmp_path, training_data), intervention)
    assert zero_weights(pruned) == pytest.approx(0.8 * weight_count(teacher), abs=3)


def test_fair_prune_keeps_parameter_count(teacher, training_data, intervention, tmp_path):
    pruned = prune_fair(teacher, 0.5, "global", make_context(tmp_path, training_data), intervention)
    assert count_parameters(pruned)[0] == count_parameters(teacher)[0]


def test_biased_weight_removal_share(teacher, training_data, tmp_path):
    intervention = Intervention(method="fair_pruning", placement="after", attribute="group", share=0.1, strength=0.3)
    pruned = remove_biased_weights(teacher, make_context(tmp_path, training_data), intervention)
    assert zero_weights(pruned) == pytest.approx(0.1 * weight_count(teacher), abs=2)


def test_biased_weight_removal_keeps_zeros(teacher, training_data, intervention, tmp_path):
    sparse = prune_fair(teacher, 0.5, "global", make_context(tmp_path / "a", training_data), intervention)
    after = Intervention(method="fair_pruning", placement="after", attribute="group", share=0.2, strength=0.3)
    pruned = remove_biased_weights(sparse, make_context(tmp_path / "b", training_data), after)
    expected = zero_weights(sparse) + 0.2 * (weight_count(teacher) - zero_weights(sparse))
    assert zero_weights(pruned) == pytest.approx(expected, abs=2)


def test_soft_gap_equalized_odds():
    import torch

    probabilities = torch.tensor([0.9, 0.5, 0.2, 0.4, 0.6, 0.1])
    labels = torch.tensor([1, 1, 0, 1, 0, 0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    # Label 1: group means 0.7 and 0.4. Label 0: 0.2 and 0.35.
    assert float(soft_gap(probabilities, labels, groups, 2, "equalized_odds")) == pytest.approx(0.3)


def test_soft_gap_demographic_parity():
    import torch

    probabilities = torch.tensor([0.9, 0.5, 0.1, 0.3])
    groups = torch.tensor([0, 0, 1, 1])
    labels = torch.tensor([1, 0, 1, 0])
    assert float(soft_gap(probabilities, labels, groups, 2, "demographic_parity")) == pytest.approx(0.5)


def test_fair_prune_rejects_multiclass(tmp_path, intervention):
    import torch

    from tests.workers.training.fixtures import biased_table, export_onnx
    from workers.data import prepare_table
    from workers.inference import model_input_specs
    from workers.spec import DataSpec

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    model = export_onnx(module)
    table = biased_table(200, seed=0)
    table["label"] = np.arange(200) % 3
    data = DataSpec(evaluation="e", label="label", sensitive=["group"], features=["f0", "f1", "f2", "f3"])
    training = prepare_table(table, data, model_input_specs(model), 3, source="test")
    with pytest.raises(CompressionError, match="binary classifier"):
        prune_fair(model, 0.5, "global", make_context(tmp_path, training), intervention)
