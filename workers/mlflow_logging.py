"""Log an audit report as one MLflow run: parameters, metrics per variant and group, and the files.

MLflow is an optional extra (`pip install 'fairsqueeze[mlflow]'`, which installs mlflow-skinny) and
is imported only when a run is logged. The tracking URI comes from `--mlflow-uri` or from
FAIRSQUEEZE_MLFLOW_TRACKING_URI; the experiment from FAIRSQUEEZE_MLFLOW_EXPERIMENT (default
"fairsqueeze").

Metric keys are `<variant>/<metric>`, `<variant>/gap/<attribute>/<gap>` (with `.../ci_low` and
`.../ci_high`), `<variant>/group/<attribute>/<group>/<rate>` and `<variant>/change/...`. MLflow
keys allow only letters, digits and `_ - . : / space`, so every other character, such as the `&`
of intersectional attributes, becomes `_`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

TRACKING_URI_VARIABLE = "FAIRSQUEEZE_MLFLOW_TRACKING_URI"
EXPERIMENT_VARIABLE = "FAIRSQUEEZE_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "fairsqueeze"
OVERALL_METRICS = ("accuracy", "balanced_accuracy", "selection_rate", "tpr", "fpr", "fnr", "precision")
GROUP_METRICS = ("accuracy", "tpr", "fpr", "selection_rate")
REPORT_FILES = ("report.json", "report.html", "gate.json", "junit.xml")
# MLflow's log_batch accepts at most 1000 metrics per call (mlflow.utils.validation, MLflow 3.18).
BATCH_SIZE = 1000
_UNSAFE_KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9_\-. :/]")


class MlflowUnavailable(RuntimeError):
    """MLflow is not installed, so audits cannot be logged to a tracking server."""


def tracking_uri_from_environment() -> str | None:
    value = os.environ.get(TRACKING_URI_VARIABLE, "").strip()
    return value or None


def require_mlflow() -> Any:
    """Import and return the mlflow module; raise MlflowUnavailable with the install command."""
    try:
        import mlflow
    except ImportError as error:
        raise MlflowUnavailable(
            "MLflow logging needs the mlflow extra; install it with pip install 'fairsqueeze[mlflow]'"
        ) from error
    return mlflow


def metric_key(*parts: str) -> str:
    return "/".join(_UNSAFE_KEY_CHARACTERS.sub("_", part) for part in parts)


def report_metrics(report: dict[str, Any]) -> dict[str, float]:
    """Flatten the numbers of every succeeded variant into MLflow metric keys; nulls are left out."""
    metrics: dict[str, float] = {}

    def put(value: Any, *parts: str) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[metric_key(*parts)] = float(value)

    def put_estimate(entry: dict[str, Any] | None, *parts: str) -> None:
        if not entry:
            return
        put(entry.get("value"), *parts)
        if entry.get("ci"):
            put(entry["ci"][0], *parts[:-1], f"{parts[-1]}/ci_low")
            put(entry["ci"][1], *parts[:-1], f"{parts[-1]}/ci_high")

    for variant in report["variants"]:
        name = variant["name"]
        if variant["status"] != "succeeded":
            continue
        artifact = variant["artifact"]
        for field in ("bytes", "gzip_bytes", "parameters", "nonzero_parameters"):
            put(artifact[field], name, f"size_{field}" if field.endswith("bytes") else field)
        put((variant.get("latency") or {}).get("mean_ms"), name, "latency_mean_ms")
        put(variant["checks"]["agreement_with_base"], name, "agreement_with_base")
        overall = variant["metrics"]["overall"]
        for field in OVERALL_METRICS:
            put(overall.get(field), name, field)
        for attribute, gaps in variant["metrics"]["gaps"].items():
            for gap, entry in gaps.items():
                put_estimate(entry, name, "gap", attribute, gap)
        for attribute, groups in variant["metrics"]["by_group"].items():
            for group, entry in groups.items():
                for field in GROUP_METRICS:
                    put(entry.get(field), name, "group", attribute, group, field)
        _change_metrics(variant.get("change_vs_base"), name, put_estimate)

    for verdict in (report.get("gate") or {}).get("variants", []):
        put(1.0 if verdict["passed"] else 0.0, verdict["name"], "gate_passed")
    return metrics


def _change_metrics(change: dict[str, Any] | None, name: str, put_estimate: Any) -> None:
    if not change:
        return
    put_estimate(change["overall"].get("accuracy_change"), name, "change", "accuracy_change")
    for attribute, gaps in change["gaps"].items():
        for gap, entry in gaps.items():
            put_estimate(entry, name, "change", "gap", attribute, gap)
    for attribute, groups in change["by_group"].items():
        for group, entry in groups.items():
            put_estimate(entry.get("accuracy_drop"), name, "change", "group", attribute, group, "accuracy_drop")


def report_params(report: dict[str, Any]) -> dict[str, str]:
    job = report["job"]
    params = {
        "model": job["model"],
        "evaluation": job["data"]["evaluation"],
        "label": job["data"]["label"],
        "sensitive": ",".join(job["data"]["sensitive"]),
        "recipes": ",".join(recipe["name"] for recipe in job["recipes"]),
        "bootstrap_resamples": str(job["bootstrap"]["resamples"]),
        "bootstrap_confidence": str(job["bootstrap"]["confidence"]),
        "seed": str(job.get("seed", 0)),
        "evaluation_rows": str(report["data"]["evaluation_rows"]),
    }
    if report.get("gate"):
        params["gate_decision"] = report["gate"]["decision"]
    # MLflow 3.18 rejects parameter values longer than 6000 characters (MAX_PARAM_VAL_LENGTH).
    return {key: value[:6000] for key, value in params.items()}


def report_tags(report: dict[str, Any]) -> dict[str, str]:
    tags = {
        "fairsqueeze.schema_version": str(report["schema_version"]),
        "fairsqueeze.version": str(report["environment"].get("fairsqueeze")),
        "fairsqueeze.device": str(report["environment"].get("device")),
    }
    gate = report.get("gate")
    if gate:
        tags["fairsqueeze.gate"] = "passed" if gate["passed"] else "failed"
        tags["fairsqueeze.recommended"] = gate["recommended"] or ""
        tags["mlflow.note.content"] = gate["summary"]
    return tags


def _artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Keep the artifacts of a SQLite store beside its database file instead of in the working folder."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite" or not parsed.path or parsed.path in ("/", "/:memory:"):
        return None
    database = Path(parsed.path[1:] if parsed.path.startswith("//") else parsed.path)
    return (database.parent / "mlartifacts" / metric_key(experiment)).resolve().as_uri()


def log_audit(
    report: dict[str, Any], out_dir: Path, *, tracking_uri: str, experiment: str | None = None
) -> str:
    """Log `report` and the files of `out_dir` as one finished MLflow run; return the run id."""
    require_mlflow()
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    experiment = experiment or os.environ.get(EXPERIMENT_VARIABLE) or DEFAULT_EXPERIMENT
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        experiment_id = client.create_experiment(experiment, artifact_location=_artifact_location(tracking_uri, experiment))
    else:
        experiment_id = found.experiment_id

    run_name = f"{Path(report['job']['model']).stem} {report['created_at'][:19]}"
    run = client.create_run(experiment_id, run_name=run_name, tags=report_tags(report))
    run_id = run.info.run_id
    try:
        params = [Param(key, value) for key, value in report_params(report).items()]
        client.log_batch(run_id, params=params)
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, 0) for key, value in report_metrics(report).items()]
        for start in range(0, len(metrics), BATCH_SIZE):
            client.log_batch(run_id, metrics=metrics[start : start + BATCH_SIZE])
        _log_files(client, run_id, report, Path(out_dir))
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    logger.info("logged audit as MLflow run %s (experiment %s, %d metrics)", run_id, experiment, len(metrics))
    return run_id


def _log_files(client: Any, run_id: str, report: dict[str, Any], out_dir: Path) -> None:
    for name in REPORT_FILES:
        path = out_dir / name
        if path.is_file():
            client.log_artifact(run_id, str(path))
    for variant in report["variants"]:
        artifact = variant.get("artifact")
        if artifact and (out_dir / artifact["path"]).is_file():
            client.log_artifact(run_id, str(out_dir / artifact["path"]), artifact_path="models")
