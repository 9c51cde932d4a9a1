"""Files and records made from a finished report: report.html, the gate's files and an MLflow run.

`run_audit` calls `publish_report` after writing report.json. A failure here is logged and does not
fail the audit, because report.json and the ONNX files are already written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from workers.html_report import write_html_report
from workers.junit import write_junit
from workers.mlflow_logging import MlflowUnavailable, log_audit, tracking_uri_from_environment
from workers.report import write_json_atomic

logger = logging.getLogger(__name__)

HTML_NAME = "report.html"
GATE_JSON_NAME = "gate.json"
JUNIT_NAME = "junit.xml"


def write_gate_files(report: dict[str, Any], out_dir: Path) -> None:
    """Write gate.json (the report's gate section) and junit.xml beside report.json."""
    write_json_atomic(out_dir / GATE_JSON_NAME, report["gate"])
    write_junit(report, out_dir / JUNIT_NAME)


def publish_report(report: dict[str, Any], out_dir: Path) -> str | None:
    """Write report.html and, with a gate, gate.json and junit.xml; log to MLflow when configured.

    MLflow logging runs when FAIRSQUEEZE_MLFLOW_TRACKING_URI is set. Returns the MLflow run id, or
    None when nothing was logged.
    """
    out_dir = Path(out_dir)
    # A rendering bug must not fail an audit whose report.json is already written, so any error is logged.
    try:
        write_html_report(report, out_dir / HTML_NAME)
    except Exception as error:
        logger.error("could not write %s in %s: %s", HTML_NAME, out_dir, error, exc_info=True)
    if report.get("gate") is not None:
        try:
            write_gate_files(report, out_dir)
        except Exception as error:
            logger.error("could not write the gate files in %s: %s", out_dir, error, exc_info=True)

    tracking_uri = tracking_uri_from_environment()
    if tracking_uri is None:
        return None
    try:
        return log_audit(report, out_dir, tracking_uri=tracking_uri)
    except MlflowUnavailable as error:
        logger.error("audit not logged to MLflow: %s", error)
    except Exception as error:  # a tracking server that is down must not fail a finished audit
        logger.error("audit not logged to MLflow at %s: %s", tracking_uri, error, exc_info=True)
    return None
