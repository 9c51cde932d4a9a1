"""Adversarial debiasing: the projected gradient, and a lower gap than plain fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest

from tests.workers.compression.helpers import compress
from tests.workers.training.fixtures import make_context, run_onnx
from workers.interventions.adversarial import AdversarialHook
from workers.spec import Intervention
from workers.training import to_trainable, training_rows


def test_gradient_opposes_adversary(teacher, training_data, tmp_path):
    import torch

    trainable = to_trainable(teacher, make_context(tmp_path, training_data), "test")
    rows = training_rows(training_data, "group", trainable.device)
    hook = AdversarialHook(n_classes=2, n_groups=2, objective="equalized_odds", strength=1.0, device=trainable.device, seed=0)
    (batch,) = list(rows.batches(np.arange(256), 256, None))
    parameters = list(trainable.module.parameters())

    logits = trainable.logits(*batch.inputs)
    adversary_grads = torch.autograd.grad(hook.adversary_loss(logits, batch), parameters, retain_graph=True)
    loss = torch.nn.functional.cross_entropy(logits, batch.labels)
    hook.backward(loss, logits, batch, parameters)
    for parameter, adversary in zip(parameters, adversary_grads):
        # grad . adversary = -strength * |adversary|^2, so a descent step raises the adversary's loss.
        assert float((parameter.grad * adversary).sum()) == pytest.approx(-float((adversary**2).sum()), rel=1e-3, abs=1e-9)


def test_adversary_features_include_label(teacher, training_data, tmp_path):
    import torch

    hook = AdversarialHook(n_classes=2, n_groups=2, objective="equalized_odds", strength=1.0, device=torch.device("cpu"), seed=0)
    parity = AdversarialHook(n_classes=2, n_groups=2, objective="demographic_parity", strength=1.0, device=torch.device("cpu"), seed=0)
    logits = torch.zeros(3, 2)
    labels = torch.tensor([0, 1, 1])
    assert hook.features(logits, labels).shape == (3, 6)
    assert parity.features(logits, labels).shape == (3, 2)


def selection_gap(predictions, table):
    groups = table["group"].to_numpy()
    return abs(float(np.mean(predictions[groups == "a"])) - float(np.mean(predictions[groups == "b"])))


def test_adversarial_finetune_narrows_gap(teacher, training_data, train_table, tmp_path):
    # Group b has a much lower positive rate, so plain training leaves a large demographic parity gap.
    options = {"epochs": 8, "batch_size": 64, "learning_rate": 0.005, "patience": 8}
    plain = compress(teacher, "finetune", make_context(tmp_path / "plain", training_data), **options)
    intervention = Intervention(
        method="adversarial", placement="during", attribute="group", objective="demographic_parity", strength=3.0
    )
    fair = compress(teacher, "finetune", make_context(tmp_path / "fair", training_data, intervention=intervention), **options)

    features = train_table[["f0", "f1", "f2", "f3"]].to_numpy()
    plain_gap = selection_gap(run_onnx(plain, features).argmax(axis=1), train_table)
    fair_gap = selection_gap(run_onnx(fair, features).argmax(axis=1), train_table)
    assert fair_gap < plain_gap - 0.05
