"""The CI gate: judge every variant of an audit report against a gate policy.

A policy (`GateSpec`) contains rules. Each limit of a rule becomes one check:

- `max` / `min` limit a value: an overall rate (`accuracy`, no attribute), a gap between the groups
  of an attribute (`equalized_odds_difference` with `attribute: sex`), or a rate of every group
  of an attribute (`accuracy` with `attribute: sex`).
- `max_drop` / `max_increase` limit the change against the base model, read from
  `change_vs_base`: overall accuracy (`accuracy_change`), a gap of an attribute, or the accuracy of
  every group of an attribute (`by_group.<attribute>.<group>.accuracy_drop`). The base model is
  judged on value rules only.

With `decision: bound` a check compares the interval's worse end with the limit (the upper end for
`max`, `max_drop` and `max_increase`, the lower end for `min`), so sampling noise cannot pass a
variant. Gaps and changes use the report's bootstrap intervals. Overall and per-group rates have no
interval in the report, so a Wilson score interval at the job's confidence is computed from the
rate and its denominator. With `decision: point` the point estimate is compared.

`evaluate_gate` is pure: it takes the report dict and the policy and returns the report's `gate`
section. It imports no model code.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from workers.fairness.rates import BINARY_GAPS, BINARY_RATES
from workers.spec import GateSpec, JobSpec

logger = logging.getLogger(__name__)

INTERSECTION_SEPARATOR = "&"
UPPER_LIMITS = ("max", "max_drop", "max_increase")
LIMITS = ("max", "min", "max_drop", "max_increase")
CHANGE_LIMITS = ("max_drop", "max_increase")
SIZE_MEASURE = "bytes"

# Names a report can hold, for checking a policy before the audit runs. Multiclass reports add
# one gap per class, named "tpr_difference:<class>" and "fpr_difference:<class>".
KNOWN_RATES = BINARY_RATES
# Multiclass reports hold a subset of these gap names besides the per-class ones.
KNOWN_GAPS = BINARY_GAPS
CLASS_GAP_PREFIXES = ("tpr_difference:", "fpr_difference:")
# Rates with a paired change in the report; other rates take max and min only.
CHANGE_RATES = ("accuracy",)


class GateError(ValueError):
    """A gate rule names a metric or attribute the report does not have, or pairs them wrongly."""


@dataclass(frozen=True)
class Vocabulary:
    """Metric and attribute names that gate rules may use."""

    rates: tuple[str, ...]
    gaps: tuple[str, ...]
    attributes: tuple[str, ...]
    gap_prefixes: tuple[str, ...] = ()

    def is_gap(self, metric: str) -> bool:
        return metric in self.gaps or metric.startswith(self.gap_prefixes)


@dataclass(frozen=True)
class Check:
    """One limit of one rule: `scope` is overall, gap or group."""

    rule: int
    metric: str
    attribute: str | None
    limit: str
    threshold: float
    scope: str

    @property
    def kind(self) -> str:
        return "change" if self.limit in CHANGE_LIMITS else "value"

    @property
    def label(self) -> str:
        if self.scope == "gap":
            subject = f"{self.metric} ({self.attribute})"
        elif self.scope == "group":
            subject = f"{self.metric} per group of {self.attribute}"
        else:
            subject = self.metric
        return f"{subject} {self.limit} {self.threshold:g}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "label": self.label,
            "metric": self.metric,
            "attribute": self.attribute,
            "limit": self.limit,
            "threshold": self.threshold,
            "scope": self.scope,
            "kind": self.kind,
        }


# Vocabulary


def vocabulary_from_report(report: dict[str, Any]) -> Vocabulary:
    """Collect the rates, gaps and attributes that the report's base variant holds."""
    base = report["variants"][0]
    metrics = base.get("metrics") or {}
    overall = metrics.get("overall") or {}
    rates = tuple(name for name in overall if name not in ("count", "small", "per_class"))
    gaps: list[str] = []
    for attribute_gaps in (metrics.get("gaps") or {}).values():
        gaps.extend(name for name in attribute_gaps if name not in gaps)
    attributes = tuple(report["data"]["groups"])
    return Vocabulary(rates=rates, gaps=tuple(gaps), attributes=attributes)


def vocabulary_from_spec(spec: JobSpec) -> Vocabulary:
    """Name what any report of this spec can hold, so a policy can be checked before the audit."""
    attributes = list(spec.data.sensitive)
    if spec.evaluation.intersectional and len(attributes) > 1:
        attributes.append(INTERSECTION_SEPARATOR.join(attributes))
    return Vocabulary(
        rates=KNOWN_RATES, gaps=KNOWN_GAPS, attributes=tuple(attributes), gap_prefixes=CLASS_GAP_PREFIXES
    )


def resolve_checks(gate: GateSpec, vocabulary: Vocabulary) -> list[Check]:
    """Turn each limit of each rule into a Check; raise GateError listing every invalid rule."""
    checks: list[Check] = []
    problems: list[str] = []
    for index, rule in enumerate(gate.rules):
        try:
            scope = _rule_scope(rule.metric, rule.attribute, vocabulary)
        except GateError as error:
            problems.append(f"gate.rules.{index}: {error}")
            continue
        for limit in LIMITS:
            threshold = getattr(rule, limit)
            if threshold is None:
                continue
            if limit in CHANGE_LIMITS and scope != "gap" and rule.metric not in CHANGE_RATES:
                problems.append(
                    f"gate.rules.{index}: {limit} on '{rule.metric}' is not available because the report has "
                    f"paired changes only for {', '.join(CHANGE_RATES)} and for the gaps; use max or min, "
                    "or a gap such as equal_opportunity_difference"
                )
                continue
            # Every rate and gap lies in [0, 1], and a change against the base in [-1, 1], so a limit
            # outside that range decides every model the same way and is almost certainly a typo.
            low = -1.0 if limit in CHANGE_LIMITS else 0.0
            if not low <= float(threshold) <= 1.0:
                problems.append(
                    f"gate.rules.{index}: {limit} {threshold} on '{rule.metric}' is outside [{low:g}, 1], the range "
                    "of rates, gaps and their changes; write shares as fractions (0.84, not 84)"
                )
                continue
            checks.append(Check(index, rule.metric, rule.attribute, limit, float(threshold), scope))
    if problems:
        raise GateError("invalid gate policy:\n" + "\n".join(problems))
    return checks


def _rule_scope(metric: str, attribute: str | None, vocabulary: Vocabulary) -> str:
    if attribute is not None and attribute not in vocabulary.attributes:
        raise GateError(
            f"unknown attribute '{attribute}'; known attributes: {', '.join(vocabulary.attributes)}"
        )
    if vocabulary.is_gap(metric):
        if attribute is None:
            raise GateError(
                f"metric '{metric}' is a gap between groups, so the rule needs an attribute "
                f"(one of {', '.join(vocabulary.attributes)})"
            )
        return "gap"
    if metric in vocabulary.rates:
        return "overall" if attribute is None else "group"
    known_gaps = list(vocabulary.gaps) + [f"{prefix}<class>" for prefix in vocabulary.gap_prefixes]
    raise GateError(
        f"unknown metric '{metric}'; known rates (overall, or per group with an attribute): "
        f"{', '.join(vocabulary.rates)}; known gaps (with an attribute): {', '.join(known_gaps)}"
    )


# Intervals


def wilson_interval(rate: float, denominator: int, confidence: float) -> list[float] | None:
    """Return the Wilson score interval of a proportion, or None when the denominator is zero."""
    if denominator <= 0:
        return None
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    z2 = z * z
    scale = 1.0 + z2 / denominator
    centre = (rate + z2 / (2.0 * denominator)) / scale
    half_width = z * math.sqrt(rate * (1.0 - rate) / denominator + z2 / (4.0 * denominator * denominator)) / scale
    return [max(0.0, centre - half_width), min(1.0, centre + half_width)]


def rate_denominator(entry: dict[str, Any], metric: str) -> int | None:
    """Return the rows a binary rate divides by, rebuilt from the group's count and base rate.

    Returns None for balanced_accuracy, which is not a single proportion.
    """
    count = entry.get("count")
    if count is None:
        return None
    if metric in ("accuracy", "selection_rate", "base_rate"):
        return int(count)
    base_rate = entry.get("base_rate")
    if base_rate is None:
        return None
    positives = round(base_rate * count)
    if metric in ("tpr", "fnr"):
        return positives
    if metric == "fpr":
        return int(count) - positives
    if metric == "precision" and entry.get("selection_rate") is not None:
        return round(entry["selection_rate"] * count)
    return None


def rate_interval(entry: dict[str, Any], metric: str, confidence: float) -> list[float] | None:
    """Return the Wilson interval of one rate of an overall or per-group entry, when it has one."""
    value = entry.get(metric)
    denominator = rate_denominator(entry, metric)
    if value is None or denominator is None:
        return None
    return wilson_interval(float(value), denominator, confidence)


# Measurements


@dataclass(frozen=True)
class Measurement:
    """What a check compares: a value (a rate, a gap, a drop or an increase) and its interval.

    `interval` names the interval method. It is None when the metric has none, because intervals
    are off or the metric is balanced_accuracy. `ci` is also None when the method yields no interval.
    """

    quantity: str
    value: float | None
    ci: list[float] | None
    interval: str | None


def _estimate(entry: dict[str, Any] | None, quantity: str, interval: str | None) -> Measurement:
    if not entry:
        return Measurement(quantity, None, None, interval)
    return Measurement(quantity, entry.get("value"), entry.get("ci"), interval)


def _as_drop(measurement: Measurement) -> Measurement:
    """Turn an increase (variant minus base) into a drop (base minus variant), or back."""
    quantity = "drop" if measurement.quantity == "increase" else "increase"
    value = None if measurement.value is None else -measurement.value
    ci = None if measurement.ci is None else [-measurement.ci[1], -measurement.ci[0]]
    return Measurement(quantity, value, ci, measurement.interval)


def _for_limit(measurement: Measurement, limit: str) -> Measurement:
    target = {"max_drop": "drop", "max_increase": "increase"}.get(limit)
    if target is None or measurement.quantity == target:
        return measurement
    return _as_drop(measurement)


def measure(
    variant: dict[str, Any], check: Check, group: str | None, *, confidence: float, intervals: bool
) -> Measurement:
    """Read the value a check limits from one variant (and one group, for group checks)."""
    metrics = variant.get("metrics") or {}
    change = variant.get("change_vs_base") or {}
    bootstrap = "bootstrap" if intervals else None
    paired = "paired bootstrap" if intervals else None

    if check.kind == "value":
        if check.scope == "gap":
            entry = (metrics.get("gaps") or {}).get(check.attribute, {}).get(check.metric)
            return _estimate(entry, "value", bootstrap)
        if check.scope == "overall":
            rates = metrics.get("overall") or {}
        else:
            rates = (metrics.get("by_group") or {}).get(check.attribute, {}).get(group) or {}
        value = rates.get(check.metric)
        ci = rate_interval(rates, check.metric, confidence) if intervals else None
        method = "Wilson" if intervals and rate_denominator(rates, check.metric) is not None else None
        return Measurement("value", value, ci, method)

    if check.scope == "gap":
        entry = (change.get("gaps") or {}).get(check.attribute, {}).get(check.metric)
        measurement = _estimate(entry, "increase", paired)
    elif check.scope == "overall":
        measurement = _estimate((change.get("overall") or {}).get("accuracy_change"), "increase", paired)
    else:
        groups = (change.get("by_group") or {}).get(check.attribute, {})
        measurement = _estimate((groups.get(group) or {}).get("accuracy_drop"), "drop", paired)
    return _for_limit(measurement, check.limit)


# Judging


def judge(measurement: Measurement, check: Check, *, decision: str, confidence: float) -> dict[str, Any]:
    """Compare one measurement with a check's limit; return status, judged value, basis and reason."""
    result: dict[str, Any] = {
        "value": measurement.value,
        "ci": measurement.ci,
        "interval": measurement.interval,
        "judged": None,
        "basis": decision,
    }
    if measurement.value is None:
        reason = f"the {_quantity_name(measurement, check)} is undefined; the variant's warnings say why"
        return {**result, "status": "undefined", "reason": reason}

    upper = check.limit in UPPER_LIMITS
    note = None
    if decision == "point":
        judged = measurement.value
    elif measurement.ci is not None:
        judged = measurement.ci[1] if upper else measurement.ci[0]
    elif measurement.interval is None:
        judged = measurement.value
        result["basis"] = "point"
        note = f"no interval for {check.metric}" if check.kind == "value" else "intervals are off"
    else:
        reason = (
            f"the {measurement.interval} interval of the {_quantity_name(measurement, check)} is undefined, "
            "because the statistic is undefined in most resamples; judge on the point estimate "
            "(decision: point) or collect more rows"
        )
        return {**result, "status": "undefined", "reason": reason}

    passed = judged <= check.threshold if upper else judged >= check.threshold
    result.update(judged=judged, status="passed" if passed else "failed")
    result["reason"] = _reason(measurement, check, judged, result["basis"], passed, confidence, note)
    return result


def _quantity_name(measurement: Measurement, check: Check) -> str:
    if measurement.quantity == "value":
        return check.metric
    return f"{measurement.quantity} of {check.metric}"


def _reason(
    measurement: Measurement,
    check: Check,
    judged: float,
    basis: str,
    passed: bool,
    confidence: float,
    note: str | None,
) -> str:
    upper = check.limit in UPPER_LIMITS
    if upper:
        operator = "<=" if passed else ">"
    else:
        operator = ">=" if passed else "<"
    name = _quantity_name(measurement, check)
    if basis == "bound":
        head = f"{'upper' if upper else 'lower'} bound of the {name} {judged:.4f}"
    else:
        head = f"{name} {judged:.4f}"
    text = f"{head} {operator} {check.limit} {check.threshold:g}"

    details = []
    if basis == "bound" or measurement.ci is not None:
        details.append(f"{measurement.quantity} {measurement.value:.4f}")
    if measurement.ci is not None:
        low, high = measurement.ci
        details.append(f"{confidence:.0%} {measurement.interval} interval [{low:.4f}, {high:.4f}]")
    if note:
        details.append(f"{note}, so judged on the point estimate")
    return f"{text} ({', '.join(details)})" if details else text


def judge_groups(
    variant: dict[str, Any], check: Check, *, decision: str, confidence: float, intervals: bool
) -> dict[str, Any]:
    """Judge a per-group check on every group of its attribute; the worst group speaks for the check."""
    if check.kind == "value":
        source = (variant.get("metrics") or {}).get("by_group") or {}
    else:
        source = (variant.get("change_vs_base") or {}).get("by_group") or {}
    names = list(source.get(check.attribute, {}))
    groups = {}
    for name in names:
        measurement = measure(variant, check, name, confidence=confidence, intervals=intervals)
        groups[name] = judge(measurement, check, decision=decision, confidence=confidence)

    upper = check.limit in UPPER_LIMITS
    judged = [name for name in names if groups[name]["judged"] is not None]
    worst = None
    if judged:
        pick = max if upper else min
        worst = pick(judged, key=lambda name: groups[name]["judged"])
    failed = [name for name in names if groups[name]["status"] == "failed"]
    undefined = [name for name in names if groups[name]["status"] == "undefined"]

    if failed:
        status = "failed"
        reason = f"{len(failed)} of {len(names)} groups fail ({', '.join(failed)}); worst, {worst}: "
        reason += groups[worst]["reason"]
    elif undefined:
        status = "undefined"
        reason = f"group {undefined[0]}: {groups[undefined[0]]['reason']}"
    elif worst is None:
        status = "undefined"
        reason = f"the variant has no groups for attribute '{check.attribute}'"
    else:
        status = "passed"
        reason = f"all {len(names)} groups pass; worst, {worst}: {groups[worst]['reason']}"

    headline = groups[worst] if worst is not None else {}
    return {
        "status": status,
        "value": headline.get("value"),
        "ci": headline.get("ci"),
        "interval": headline.get("interval"),
        "judged": headline.get("judged"),
        "basis": headline.get("basis", decision),
        "worst_group": worst,
        "groups": {name: {key: groups[name][key] for key in ("status", "value", "ci", "judged")} for name in names},
        "reason": reason,
    }


def judge_variant(
    variant: dict[str, Any], checks: list[Check], *, decision: str, confidence: float, intervals: bool
) -> dict[str, Any]:
    """Judge one variant on every check; a variant passes when no check fails or is undefined."""
    name = variant["name"]
    results = []
    for index, check in enumerate(checks):
        if variant.get("status") != "succeeded":
            result = {"status": "error", "reason": f"the variant failed: {variant.get('error')}"}
        elif name == "base" and check.kind == "change":
            result = {"status": "skipped", "reason": "change rules do not apply to the base model"}
        elif check.scope == "group":
            result = judge_groups(variant, check, decision=decision, confidence=confidence, intervals=intervals)
        else:
            measurement = measure(variant, check, None, confidence=confidence, intervals=intervals)
            result = judge(measurement, check, decision=decision, confidence=confidence)
        results.append({"check": index, "label": check.label, **result})

    artifact = variant.get("artifact") or {}
    passed = variant.get("status") == "succeeded" and all(
        result["status"] in ("passed", "skipped") for result in results
    )
    return {"name": name, "passed": passed, "size": artifact.get(SIZE_MEASURE), "results": results}


# The gate section


def evaluate_gate(report: dict[str, Any], gate: GateSpec) -> dict[str, Any]:
    """Judge every variant of `report` on `gate` and pick the smallest passing model.

    Returns the report's `gate` section. Raises GateError when a rule names a metric or attribute
    that the report does not have.
    """
    checks = resolve_checks(gate, vocabulary_from_report(report))
    bootstrap = report["job"]["bootstrap"]
    confidence = float(bootstrap["confidence"])
    intervals = int(bootstrap["resamples"]) > 0

    verdicts = [
        judge_variant(variant, checks, decision=gate.decision, confidence=confidence, intervals=intervals)
        for variant in report["variants"]
    ]
    passing = [verdict["name"] for verdict in verdicts if verdict["passed"]]
    recommended = _smallest(report, passing)
    logger.info("gate judged %d variants on %d checks: %d pass", len(verdicts), len(checks), len(passing))
    return {
        "decision": gate.decision,
        "confidence": confidence,
        "size_measure": SIZE_MEASURE,
        "rules": [rule.model_dump(mode="json", exclude_none=True) for rule in gate.rules],
        "checks": [check.as_dict() for check in checks],
        "variants": verdicts,
        "passing": passing,
        "passed": bool(passing),
        "recommended": recommended,
        "summary": _summary(report, verdicts, passing, recommended),
    }


def gate_error_section(gate: GateSpec, error: GateError) -> dict[str, Any]:
    """Build the gate section of a report whose policy does not fit it: nothing passes."""
    return {
        "decision": gate.decision,
        "confidence": None,
        "size_measure": SIZE_MEASURE,
        "rules": [rule.model_dump(mode="json", exclude_none=True) for rule in gate.rules],
        "checks": [],
        "variants": [],
        "passing": [],
        "passed": False,
        "recommended": None,
        "summary": str(error),
        "error": str(error),
    }


def check_policy(spec: JobSpec) -> list[Check]:
    """Check the spec's gate against the names its report can hold, before running the audit."""
    if spec.gate is None:
        return []
    return resolve_checks(spec.gate, vocabulary_from_spec(spec))


def _smallest(report: dict[str, Any], passing: list[str]) -> str | None:
    order = {variant["name"]: index for index, variant in enumerate(report["variants"])}
    artifacts = {variant["name"]: variant.get("artifact") or {} for variant in report["variants"]}
    if not passing:
        return None
    return min(
        passing,
        key=lambda name: (
            artifacts[name].get(SIZE_MEASURE, math.inf),
            artifacts[name].get("gzip_bytes", math.inf),
            order[name],
        ),
    )


def _summary(
    report: dict[str, Any], verdicts: list[dict[str, Any]], passing: list[str], recommended: str | None
) -> str:
    total = len(verdicts)
    if recommended is None:
        return f"no model passes every rule (0 of {total})"
    size = next(verdict["size"] for verdict in verdicts if verdict["name"] == recommended)
    text = (
        f"{recommended} is the smallest model that passes every rule ({size:,} {SIZE_MEASURE}); "
        f"{len(passing)} of {total} pass"
    )
    if passing == ["base"]:
        text += "; no compressed variant passes"
    return text
