"""Gate verdicts on reports built from chosen predictions: limits, bounds, groups and the recommendation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.workers.gate_reports import flip, labelled_rows, make_report
from workers.gate import GateError, check_policy, evaluate_gate, resolve_checks, vocabulary_from_spec, wilson_interval
from workers.spec import GateSpec, SpecError, load_gate_file, parse_spec


def gate(*rules: dict, decision: str = "bound") -> GateSpec:
    return GateSpec.model_validate({"decision": decision, "rules": list(rules)})


def result_of(section: dict, variant: str, check: int = 0) -> dict:
    verdict = next(item for item in section["variants"] if item["name"] == variant)
    return verdict["results"][check]


@pytest.fixture(scope="module")
def rows():
    return labelled_rows()


@pytest.fixture(scope="module")
def report(rows):
    labels, groups = rows
    base = flip(labels, 0.10, seed=1)
    hurts_b = np.where(groups == 1, flip(labels, 0.25, seed=2), base)
    predictions = {"base": base, "close": flip(labels, 0.11, seed=1), "hurts-b": hurts_b}
    return make_report(labels, groups, predictions, sizes={"base": 9000, "close": 3000, "hurts-b": 2000})


def test_gap_bound_stricter_than_point(report):
    entry = report["variants"][1]["metrics"]["gaps"]["sex"]["equalized_odds_difference"]
    threshold = (entry["value"] + entry["ci"][1]) / 2
    rule = {"metric": "equalized_odds_difference", "attribute": "sex", "max": threshold}

    bound = result_of(evaluate_gate(report, gate(rule)), "close")
    point = result_of(evaluate_gate(report, gate(rule, decision="point")), "close")

    assert bound["status"] == "failed"
    assert bound["judged"] == entry["ci"][1]
    assert point["status"] == "passed"
    assert point["judged"] == entry["value"]


def test_accuracy_min_uses_wilson_bound(report):
    overall = report["variants"][1]["metrics"]["overall"]
    low, _ = wilson_interval(overall["accuracy"], overall["count"], 0.95)
    threshold = (low + overall["accuracy"]) / 2

    result = result_of(evaluate_gate(report, gate({"metric": "accuracy", "min": threshold})), "close")

    assert result["status"] == "failed"
    assert result["interval"] == "Wilson"
    assert result["judged"] == pytest.approx(low)
    assert "lower bound of the accuracy" in result["reason"]


def test_max_drop_uses_paired_upper_end(report):
    change = report["variants"][1]["change_vs_base"]["overall"]["accuracy_change"]
    drop_value, drop_high = -change["value"], -change["ci"][0]
    threshold = (drop_value + drop_high) / 2

    bound = result_of(evaluate_gate(report, gate({"metric": "accuracy", "max_drop": threshold})), "close")
    point = result_of(evaluate_gate(report, gate({"metric": "accuracy", "max_drop": threshold}, decision="point")), "close")

    assert bound["status"] == "failed"
    assert bound["judged"] == pytest.approx(drop_high)
    assert bound["interval"] == "paired bootstrap"
    assert point["status"] == "passed"
    assert point["judged"] == pytest.approx(drop_value)


def test_max_increase_reads_gap_change(report):
    change = report["variants"][2]["change_vs_base"]["gaps"]["sex"]["equalized_odds_difference"]
    rule = {"metric": "equalized_odds_difference", "attribute": "sex", "max_increase": 0.02}

    result = result_of(evaluate_gate(report, gate(rule)), "hurts-b")

    assert change["value"] > 0.05
    assert result["status"] == "failed"
    assert result["judged"] == pytest.approx(change["ci"][1])
    assert "upper bound of the increase of equalized_odds_difference" in result["reason"]


def test_group_drop_names_worst_group(report):
    rule = {"metric": "accuracy", "attribute": "sex", "max_drop": 0.03}

    result = result_of(evaluate_gate(report, gate(rule)), "hurts-b")

    assert result["status"] == "failed"
    assert result["worst_group"] == "b"
    assert result["groups"]["a"]["status"] == "passed"
    assert result["groups"]["b"]["status"] == "failed"
    assert "1 of 2 groups fail (b)" in result["reason"]


def test_group_value_rule_checks_every_group(report):
    base_groups = report["variants"][0]["metrics"]["by_group"]["sex"]
    lowest = min(entry["accuracy"] for entry in base_groups.values())

    result = result_of(evaluate_gate(report, gate({"metric": "accuracy", "attribute": "sex", "min": 0.5})), "base")
    strict = result_of(evaluate_gate(report, gate({"metric": "accuracy", "attribute": "sex", "min": lowest})), "base")

    assert result["status"] == "passed"
    assert set(result["groups"]) == {"a", "b"}
    assert strict["status"] == "failed"


def test_base_skips_change_rules(report):
    section = evaluate_gate(report, gate({"metric": "accuracy", "max_drop": 0.0001}, {"metric": "accuracy", "min": 0.5}))
    base = section["variants"][0]

    assert base["results"][0]["status"] == "skipped"
    assert base["results"][1]["status"] == "passed"
    assert base["passed"] is True


def test_smallest_passing_model_recommended(report):
    section = evaluate_gate(report, gate({"metric": "accuracy", "min": 0.5}))

    assert section["passing"] == ["base", "close", "hurts-b"]
    assert section["recommended"] == "hurts-b"
    assert section["passed"] is True
    assert "hurts-b is the smallest model that passes every rule (2,000 bytes)" in section["summary"]


def test_recommendation_skips_failing_smaller(report):
    section = evaluate_gate(report, gate({"metric": "accuracy", "attribute": "sex", "max_drop": 0.03}))

    assert section["passing"] == ["base", "close"]
    assert section["recommended"] == "close"


def test_no_passing_model(report):
    section = evaluate_gate(report, gate({"metric": "accuracy", "min": 0.99}))

    assert section["passed"] is False
    assert section["recommended"] is None
    assert section["summary"] == "no model passes every rule (0 of 3)"


def test_only_base_passing_is_named(report):
    section = evaluate_gate(
        report, gate({"metric": "accuracy", "min": 0.5}, {"metric": "accuracy", "max_drop": -0.5})
    )

    assert section["recommended"] == "base"
    assert section["summary"].endswith("no compressed variant passes")


def test_failed_variant_cannot_pass(rows):
    labels, groups = rows
    base = flip(labels, 0.1)
    report = make_report(labels, groups, {"base": base, "broken": base}, failed=("broken",))

    section = evaluate_gate(report, gate({"metric": "accuracy", "min": 0.5}))
    broken = section["variants"][1]

    assert broken["passed"] is False
    assert broken["size"] is None
    assert broken["results"][0]["status"] == "error"
    assert "conversion failed" in broken["results"][0]["reason"]


def test_undefined_rate_fails_check(rows):
    labels, groups = rows
    # Group b gets no positive labels, so its TPR is undefined.
    labels = np.where(groups == 1, 0, labels)
    report = make_report(labels, groups, {"base": flip(labels, 0.1)})

    result = result_of(evaluate_gate(report, gate({"metric": "tpr", "attribute": "sex", "min": 0.1})), "base")

    assert result["status"] == "undefined"
    assert result["groups"]["b"]["status"] == "undefined"
    assert "group b: the tpr is undefined" in result["reason"]


def test_intervals_off_judges_point(rows):
    labels, groups = rows
    report = make_report(labels, groups, {"base": flip(labels, 0.1), "v": flip(labels, 0.12)}, resamples=0)

    section = evaluate_gate(report, gate({"metric": "accuracy", "max_drop": 0.05}, {"metric": "accuracy", "min": 0.5}))
    drop, minimum = section["variants"][1]["results"]

    assert drop["basis"] == "point"
    assert drop["status"] == "passed"
    assert "intervals are off, so judged on the point estimate" in drop["reason"]
    assert minimum["basis"] == "point"
    assert minimum["ci"] is None


def test_balanced_accuracy_has_no_interval(report):
    result = result_of(evaluate_gate(report, gate({"metric": "balanced_accuracy", "min": 0.5})), "base")

    assert result["basis"] == "point"
    assert result["interval"] is None
    assert "no interval for balanced_accuracy" in result["reason"]


def test_two_limits_make_two_checks(report):
    section = evaluate_gate(report, gate({"metric": "accuracy", "min": 0.5, "max_drop": 0.5}))

    assert [check["limit"] for check in section["checks"]] == ["min", "max_drop"]
    assert [check["label"] for check in section["checks"]] == ["accuracy min 0.5", "accuracy max_drop 0.5"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"metric": "eod", "attribute": "sex", "max": 0.1}, "unknown metric 'eod'; known rates"),
        ({"metric": "equalized_odds_difference", "attribute": "gender", "max": 0.1},
         "unknown attribute 'gender'; known attributes: sex"),
        ({"metric": "equalized_odds_difference", "max": 0.1}, "is a gap between groups, so the rule needs an attribute"),
        ({"metric": "tpr", "max_drop": 0.1}, "max_drop on 'tpr' is not available"),
    ],
)
def test_invalid_rule_names_problem(report, rule, message):
    with pytest.raises(GateError) as caught:
        evaluate_gate(report, gate(rule))

    assert message in str(caught.value)
    assert "gate.rules.0" in str(caught.value)


def test_unknown_metric_lists_known_gaps(report):
    with pytest.raises(GateError) as caught:
        evaluate_gate(report, gate({"metric": "eod", "attribute": "sex", "max": 0.1}))

    assert "equalized_odds_difference" in str(caught.value)
    assert "accuracy" in str(caught.value)


def test_every_invalid_rule_reported(report):
    with pytest.raises(GateError) as caught:
        evaluate_gate(report, gate({"metric": "x", "max": 1}, {"metric": "accuracy", "min": 0.5}, {"metric": "y", "max": 1}))

    assert "gate.rules.0: unknown metric 'x'" in str(caught.value)
    assert "gate.rules.2: unknown metric 'y'" in str(caught.value)


def test_wilson_interval_reference_values():
    # 50 successes in 100 trials at 95%: the Wilson score interval is [0.4038, 0.5962].
    low, high = wilson_interval(0.5, 100, 0.95)

    assert low == pytest.approx(0.4038, abs=1e-4)
    assert high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0.5, 0, 0.95) is None


def test_wilson_interval_stays_in_unit_range():
    low, high = wilson_interval(1.0, 20, 0.95)

    assert high == 1.0
    assert 0.8 < low < 1.0


SPEC = {
    "model": "model.onnx",
    "data": {"evaluation": "eval.csv", "label": "y", "sensitive": ["sex", "race"]},
}


def test_spec_check_knows_intersection():
    spec = parse_spec({**SPEC, "gate": {"rules": [{"metric": "equalized_odds_difference", "attribute": "sex&race", "max": 0.1}]}})

    checks = check_policy(spec)

    assert vocabulary_from_spec(spec).attributes == ("sex", "race", "sex&race")
    assert checks[0].scope == "gap"


def test_spec_check_accepts_class_gaps():
    spec = parse_spec({**SPEC, "gate": {"rules": [{"metric": "tpr_difference:High", "attribute": "sex", "max": 0.1}]}})

    assert check_policy(spec)[0].scope == "gap"


def test_spec_check_rejects_unknown_attribute():
    spec = parse_spec({**SPEC, "gate": {"rules": [{"metric": "accuracy", "attribute": "age", "max_drop": 0.1}]}})

    with pytest.raises(GateError, match="unknown attribute 'age'; known attributes: sex, race, sex&race"):
        check_policy(spec)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"metric": "accuracy"}], "sets no limit"),
        ([{"metric": "accuracy", "min": math.nan}], "min must be a finite number"),
        ([{"metric": "accuracy", "min": 0.9, "max": 0.8}], "min 0.9 is above max 0.8"),
        ([], "the gate has no rules"),
        ([{"metric": "accuracy", "minimum": 0.8}], "gate.rules.0.minimum"),
    ],
)
def test_invalid_gate_spec_rejected(rules, message):
    with pytest.raises(SpecError) as caught:
        parse_spec({**SPEC, "gate": {"rules": rules}})

    assert message in str(caught.value)


def test_policy_file_loads_wrapped_section(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("gate:\n  decision: point\n  rules:\n    - {metric: accuracy, min: 0.8}\n")

    policy = load_gate_file(path)

    assert policy.decision == "point"
    assert policy.rules[0].min == 0.8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [{metric: accuracy, max_dorp: 0.1}]\n", "rules.0.max_dorp"),
        ("- metric: accuracy\n", "must hold a mapping with 'decision' and 'rules'"),
        ("rules: [\n", "is not valid YAML"),
        ("decision: median\nrules: [{metric: accuracy, min: 0.5}]\n", "decision"),
    ],
)
def test_policy_file_errors_name_problem(tmp_path, text, message):
    path = tmp_path / "policy.yaml"
    path.write_text(text)

    with pytest.raises(SpecError) as caught:
        load_gate_file(path)

    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_policy_file_missing(tmp_path):
    with pytest.raises(SpecError, match="gate policy file not found"):
        load_gate_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    "rule",
    [
        {"metric": "accuracy", "min": 1.5},
        {"metric": "accuracy", "min": 84},
        {"metric": "equalized_odds_difference", "attribute": "sex", "max": -0.1},
        {"metric": "accuracy", "max_drop": 2.0},
    ],
)
def test_limit_outside_range_rejected(rule):
    spec = parse_spec(
        {"model": "m.onnx", "data": {"evaluation": "e.csv", "label": "y", "sensitive": ["sex"]}}
    )
    with pytest.raises(GateError, match="is outside"):
        resolve_checks(GateSpec.model_validate({"rules": [rule]}), vocabulary_from_spec(spec))
