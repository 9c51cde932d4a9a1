"""Threshold post-processing: fitted rules narrow the gap, apply per group, and are seeded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.workers.training.fixtures import FEATURES, equalized_odds_gap, make_context, run_onnx
from workers.compression import CompressionError
from workers.interventions.thresholds import (
    apply_threshold_rules,
    fit_threshold_rules,
    positive_probabilities,
    positive_scores,
    read_rules,
    write_rules,
)
from workers.spec import Intervention

INTERVENTION = Intervention(method="thresholds", placement="after", attribute="group")


@pytest.fixture(scope="module")
def rules(teacher, training_data, tmp_path_factory):
    return fit_threshold_rules(teacher, make_context(tmp_path_factory.mktemp("rules"), training_data), INTERVENTION)


@pytest.fixture(scope="module")
def scores(teacher, train_table):
    return positive_scores(run_onnx(teacher, train_table[FEATURES].to_numpy()), "scores")


def test_rules_cover_every_group(rules):
    assert sorted(rules["groups"]) == ["a", "b"]
    assert rules["attribute"] == "group"


def test_rules_narrow_parity_gap(teacher, training_data, train_table, scores, tmp_path):
    parity = Intervention(method="thresholds", placement="after", attribute="group", objective="demographic_parity")
    parity_rules = fit_threshold_rules(teacher, make_context(tmp_path, training_data), parity)
    groups = train_table["group"].to_numpy()
    adjusted = apply_threshold_rules(scores, groups, parity_rules, positive_class=1)
    plain = (scores > 0).astype(int)

    def gap(predictions):
        return abs(float(np.mean(predictions[groups == "a"])) - float(np.mean(predictions[groups == "b"])))

    assert gap(adjusted) < gap(plain) - 0.1


def test_rules_keep_equalized_odds_small(train_table, scores, rules):
    adjusted = apply_threshold_rules(scores, train_table["group"].to_numpy(), rules, positive_class=1)
    assert equalized_odds_gap(adjusted, train_table) < 0.08


def test_randomized_decisions_are_seeded(train_table, scores, rules):
    groups = train_table["group"].to_numpy()
    first = apply_threshold_rules(scores, groups, rules, positive_class=1)
    second = apply_threshold_rules(scores, groups, rules, positive_class=1)
    assert np.array_equal(first, second)


def test_probabilities_stay_in_unit_range(train_table, scores, rules):
    probabilities = positive_probabilities(scores, train_table["group"].to_numpy(), rules)
    assert probabilities.min() >= 0.0
    assert probabilities.max() <= 1.0


def test_rules_file_round_trip(rules, tmp_path):
    path = tmp_path / "variant.thresholds.json"
    write_rules(rules, path)
    assert read_rules(path) == json.loads(json.dumps(rules))


def test_unknown_group_rejected(scores, rules):
    with pytest.raises(CompressionError, match="no entry for group 'c'"):
        apply_threshold_rules(scores[:3], np.array(["a", "b", "c"]), rules, positive_class=1)


def test_multiclass_scores_rejected():
    with pytest.raises(CompressionError, match="binary classifier"):
        positive_scores(np.zeros((4, 3)), "scores")


def test_single_score_passes_through():
    assert np.array_equal(positive_scores(np.array([[0.5], [-1.0]]), "single_score"), np.array([0.5, -1.0]))
