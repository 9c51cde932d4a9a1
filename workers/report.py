"""The audit report (version 1): assembly, atomic writing and the JSON Schema it follows."""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.gate import GateError, evaluate_gate, gate_error_section

if TYPE_CHECKING:
    from workers.pipeline import AuditInputs
    from workers.spec import JobSpec

logger = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str) -> dict[str, Any]:
    return {
        "fairsqueeze": _version("fairsqueeze"),
        "python": platform.python_version(),
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "platform": platform.platform(),
        "device": device,
    }


def data_summary(inputs: AuditInputs) -> dict[str, Any]:
    evaluation = inputs.evaluation
    groups = {
        attribute: {name: int(count) for name, count in zip(names, _bincount(codes, len(names)))}
        for attribute, (codes, names) in evaluation.groups.items()
    }
    return {
        "evaluation_rows": evaluation.rows,
        "training_rows": inputs.training.rows if inputs.training is not None else None,
        "classes": evaluation.class_names,
        "positive_class": (
            evaluation.class_names[evaluation.positive_class] if evaluation.positive_class is not None else None
        ),
        "features": evaluation.feature_names,
        "groups": groups,
        "model_output": {"name": inputs.interpretation.name, "kind": inputs.interpretation.kind},
    }


def _bincount(codes: Any, length: int) -> list[int]:
    import numpy as np

    return np.bincount(codes, minlength=length).tolist()


def build_report(
    *,
    spec: JobSpec,
    inputs: AuditInputs,
    variants: list[dict[str, Any]],
    device: str,
    started_at: datetime,
    finished_at: datetime,
) -> dict[str, Any]:
    """Assemble the report dict: the resolved spec, the data summary and every variant, base first."""
    job = spec.model_dump(mode="json")
    job["recipes"] = [recipe.model_dump(mode="json") for recipe in spec.resolved_recipes()]
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "job": job,
        "created_at": finished_at.isoformat(),
        "duration_seconds": (finished_at - started_at).total_seconds(),
        "environment": environment(device),
        "data": data_summary(inputs),
        "variants": variants,
    }
    if spec.gate is not None:
        report["gate"] = gate_section(report, spec)
    return report


def gate_section(report: dict[str, Any], spec: JobSpec) -> dict[str, Any]:
    """Judge the variants on the spec's gate; a policy that does not fit the report passes nothing."""
    try:
        return evaluate_gate(report, spec.gate)
    except GateError as error:
        logger.error("gate policy does not fit the report: %s", error)
        return gate_error_section(spec.gate, error)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(payload, stream, indent=2, allow_nan=False)
            stream.write("\n")
        # mkstemp creates the file readable by its owner only, unlike the ONNX files beside it.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
