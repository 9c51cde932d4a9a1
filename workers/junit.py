"""JUnit XML from a report's gate section: one test suite per variant, one test case per check.

The layout is the Ant/Jenkins JUnit format that CI servers (Jenkins, GitLab, GitHub Actions test
reporters) read: `testsuites` > `testsuite` > `testcase` with an optional `failure`, `error` or
`skipped` child. A failed or undefined check is a failure, and a check on a variant that failed
to build is an error. A change rule on the base model is skipped.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SUITES_NAME = "fairsqueeze gate"
CLASS_PREFIX = "fairsqueeze.gate"


def build_junit(report: dict[str, Any]) -> ET.Element:
    """Build the `testsuites` element for the report's gate section; raise KeyError without one."""
    gate = report["gate"]
    timestamp = _timestamp(report.get("created_at"))
    variants = {variant["name"]: variant for variant in report["variants"]}
    root = ET.Element("testsuites", name=SUITES_NAME)

    if gate.get("error"):
        suite = _suite(root, "gate policy", timestamp, seconds=0.0)
        case = ET.SubElement(suite, "testcase", name="policy fits the report", classname=f"{CLASS_PREFIX}.policy")
        case.set("time", "0")
        ET.SubElement(case, "error", message=gate["error"], type="InvalidPolicy").text = gate["error"]
    for verdict in gate["variants"]:
        variant = variants.get(verdict["name"], {})
        timings = variant.get("timings") or {}
        seconds = float(timings.get("compress_seconds", 0.0)) + float(timings.get("evaluate_seconds", 0.0))
        suite = _suite(root, verdict["name"], timestamp, seconds=seconds)
        _properties(suite, verdict, variant, gate)
        for result in verdict["results"]:
            _case(suite, verdict["name"], result)
        ET.SubElement(suite, "system-out").text = _variant_text(verdict)

    _count(root)
    return root


def _timestamp(created_at: str | None) -> str:
    """Format the report time as the JUnit schema's dateTime without a time zone."""
    if not created_at:
        return datetime.now().replace(microsecond=0).isoformat()
    return datetime.fromisoformat(created_at).replace(tzinfo=None, microsecond=0).isoformat()


def _suite(root: ET.Element, name: str, timestamp: str, *, seconds: float) -> ET.Element:
    suite = ET.SubElement(root, "testsuite", name=name)
    suite.set("timestamp", timestamp)
    suite.set("hostname", "localhost")
    suite.set("time", f"{seconds:.3f}")
    return suite


def _properties(suite: ET.Element, verdict: dict[str, Any], variant: dict[str, Any], gate: dict[str, Any]) -> None:
    properties = ET.SubElement(suite, "properties")
    values = {
        "method": variant.get("method", ""),
        "status": variant.get("status", ""),
        "passed": str(verdict["passed"]).lower(),
        "recommended": str(verdict["name"] == gate.get("recommended")).lower(),
        "decision": gate["decision"],
    }
    if verdict.get("size") is not None:
        values["size_bytes"] = str(verdict["size"])
    for name, value in values.items():
        ET.SubElement(properties, "property", name=name, value=value)


def _case(suite: ET.Element, variant: str, result: dict[str, Any]) -> None:
    case = ET.SubElement(suite, "testcase", name=result["label"], classname=f"{CLASS_PREFIX}.{variant}")
    case.set("time", "0")
    status = result["status"]
    if status == "skipped":
        ET.SubElement(case, "skipped", message=result["reason"])
    elif status == "error":
        ET.SubElement(case, "error", message=result["reason"], type="VariantFailed").text = result["reason"]
    elif status in ("failed", "undefined"):
        kind = "GateFailure" if status == "failed" else "UndefinedValue"
        ET.SubElement(case, "failure", message=result["reason"], type=kind).text = _failure_text(result)


def _failure_text(result: dict[str, Any]) -> str:
    lines = [result["reason"]]
    for name, group in (result.get("groups") or {}).items():
        if group["status"] != "passed":
            judged = "-" if group["judged"] is None else f"{group['judged']:.4f}"
            lines.append(f"group {name}: {group['status']} (judged {judged})")
    return "\n".join(lines)


def _variant_text(verdict: dict[str, Any]) -> str:
    outcome = "passes" if verdict["passed"] else "fails"
    lines = [f"{verdict['name']} {outcome} the gate"]
    lines += [f"{result['status']}: {result['label']}: {result['reason']}" for result in verdict["results"]]
    return "\n".join(lines)


def _count(root: ET.Element) -> None:
    """Set tests, failures, errors and skipped on every suite and on the root."""
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        counts = {
            "tests": len(cases),
            "failures": sum(case.find("failure") is not None for case in cases),
            "errors": sum(case.find("error") is not None for case in cases),
            "skipped": sum(case.find("skipped") is not None for case in cases),
        }
        for name, value in counts.items():
            suite.set(name, str(value))
            totals[name] += value
    for name, value in totals.items():
        root.set(name, str(value))


def write_junit(report: dict[str, Any], path: Path) -> None:
    """Write the gate's JUnit XML to `path` (UTF-8, with an XML declaration)."""
    root = build_junit(report)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    ET.ElementTree(root).write(temporary, encoding="utf-8", xml_declaration=True)
    temporary.replace(path)
    logger.info("wrote JUnit XML with %s test cases to %s", root.get("tests"), path)
