"""The gate's JUnit XML: schema validity, one test case per variant and check, outcomes and counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lxml import etree

from tests.workers.gate_reports import flip, labelled_rows, make_report
from workers.gate import evaluate_gate
from workers.junit import write_junit
from workers.spec import GateSpec

SCHEMA_PATH = Path(__file__).with_name("schemas") / "junit.xsd"
RULES = [
    {"metric": "accuracy", "min": 0.85},
    {"metric": "accuracy", "attribute": "sex", "max_drop": 0.03},
    {"metric": "equalized_odds_difference", "attribute": "sex", "max": 0.5},
]


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))


@pytest.fixture(scope="module")
def junit(tmp_path_factory) -> tuple[dict, etree._ElementTree]:
    labels, groups = labelled_rows()
    base = flip(labels, 0.1)
    predictions = {
        "base": base,
        "fine": flip(labels, 0.105),
        "hurts-b": np.where(groups == 1, flip(labels, 0.3, seed=3), base),
        "broken": base,
    }
    report = make_report(labels, groups, predictions, failed=("broken",))
    report["gate"] = evaluate_gate(report, GateSpec.model_validate({"rules": RULES}))
    path = tmp_path_factory.mktemp("junit") / "junit.xml"
    write_junit(report, path)
    return report, etree.parse(str(path))


def test_junit_validates_against_schema(schema, junit):
    _, document = junit

    valid = schema.validate(document)

    assert valid, str(schema.error_log)


def test_schema_rejects_testcase_without_classname(schema):
    document = etree.fromstring(
        '<testsuites><testsuite name="s" tests="1"><testcase name="c"/></testsuite></testsuites>'
    )

    assert not schema.validate(document)


def test_schema_rejects_failure_outside_testcase(schema):
    document = etree.fromstring(
        '<testsuites><testsuite name="s" tests="1"><failure message="m"/></testsuite></testsuites>'
    )

    assert not schema.validate(document)


def test_one_case_per_variant_and_check(junit):
    report, document = junit
    root = document.getroot()

    suites = root.findall("testsuite")

    assert [suite.get("name") for suite in suites] == ["base", "fine", "hurts-b", "broken"]
    for suite in suites:
        names = [case.get("name") for case in suite.findall("testcase")]
        assert names == [check["label"] for check in report["gate"]["checks"]]
    assert root.get("tests") == str(4 * 3)


def test_outcomes_match_verdicts(junit):
    _, document = junit
    root = document.getroot()

    def outcome(suite: str, case: int) -> str:
        element = root.findall(f"testsuite[@name='{suite}']/testcase")[case]
        children = [child.tag for child in element]
        return children[0] if children else "passed"

    assert outcome("base", 0) == "passed"
    assert outcome("base", 1) == "skipped"
    assert outcome("hurts-b", 1) == "failure"
    assert outcome("fine", 1) == "passed"
    assert outcome("broken", 0) == "error"


def test_failure_message_carries_reason(junit):
    report, document = junit
    failure = document.getroot().find("testsuite[@name='hurts-b']/testcase[2]/failure")
    result = report["gate"]["variants"][2]["results"][1]

    assert failure.get("message") == result["reason"]
    assert failure.get("type") == "GateFailure"
    assert "group b: failed" in failure.text


def test_counts_add_up(junit):
    _, document = junit
    root = document.getroot()
    suites = root.findall("testsuite")

    for name in ("failures", "errors", "skipped"):
        assert int(root.get(name)) == sum(int(suite.get(name)) for suite in suites)
    assert root.get("errors") == "3"
    assert root.find("testsuite[@name='broken']").get("errors") == "3"


def test_recommended_property_set(junit):
    report, document = junit
    recommended = report["gate"]["recommended"]
    suite = document.getroot().find(f"testsuite[@name='{recommended}']")

    value = suite.find("properties/property[@name='recommended']").get("value")

    assert recommended == "fine"
    assert value == "true"
