"""The audit pipeline: compress the model with each recipe, evaluate every variant, write the report.

The CLI, the Celery task and the tests call `run_audit` with plain paths and a validated job spec.
Each finished variant is also kept in `out_dir/.variants` (see workers.resume), so a run that resumes
after an interruption (a redelivered task) reuses finished variants instead of redoing them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import onnx

from workers.compression import CompressionContext, CompressionError, get_method
from workers.data import DataError, InputSpec, PreparedData, build_inputs, get_column, prepare_table, read_table
from workers.fairness import BootstrapSettings, compare_predictions, evaluate_predictions
from workers.inference import (
    OutputInterpretation,
    create_session,
    interpret_outputs,
    measure_latency,
    model_input_specs,
    predict,
)
from workers.compression.stats import count_parameters
from workers.onnx_model import ModelError, file_facts, load_model, save_model, validate_model
from workers.publish import publish_report
from workers.report import build_report, write_json_atomic
from workers.resume import PARTIAL_DIR, clean_partial_results, load_partial, load_predictions, recipe_key, store_partial
from workers.spec import JobSpec, Recipe, SpecError

if TYPE_CHECKING:
    from workers.interventions import BuiltVariant

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[dict[str, Any]], None]


@dataclass
class AuditInputs:
    """Everything a run needs, loaded and validated once."""

    model: onnx.ModelProto
    model_path: Path
    input_specs: list[InputSpec]
    interpretation: OutputInterpretation
    evaluation: PreparedData
    training: PreparedData | None


def _resolve(path_text: str, base_dir: Path | None) -> Path:
    path = Path(path_text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def check_inputs(spec: JobSpec, *, base_dir: Path | None = None) -> AuditInputs:
    """Load and validate the model and tables a spec names; raise naming the field, column or value."""
    model_path = _resolve(spec.model, base_dir)
    model = load_model(model_path)
    input_specs = model_input_specs(model)
    session = create_session(model)

    evaluation_path = _resolve(spec.data.evaluation, base_dir)
    evaluation_table = read_table(evaluation_path, delimiter=spec.data.delimiter)
    source = f"evaluation table {evaluation_path.name}"

    # The number of classes comes from the model, so a small labelled batch is run first.
    probe = _probe_inputs(evaluation_table, spec, input_specs, source)
    interpretation = interpret_outputs(
        session, probe, output_name=spec.evaluation.output, output_kind=spec.evaluation.output_kind
    )
    n_outputs = interpretation.n_classes or (len(spec.data.classes) if spec.data.classes else 2)

    evaluation = prepare_table(
        evaluation_table,
        spec.data,
        input_specs,
        n_outputs,
        source=source,
        intersectional=spec.evaluation.intersectional,
    )

    training = None
    if spec.data.training is not None:
        training_path = _resolve(spec.data.training, base_dir)
        if training_path.resolve() == evaluation_path.resolve():
            raise SpecError(
                f"data.training and data.evaluation name the same file ({training_path.name}); calibration and "
                "training must never see the evaluation table"
            )
        training_table = read_table(training_path, delimiter=spec.data.delimiter)
        training = prepare_table(
            training_table,
            spec.data,
            input_specs,
            n_outputs,
            source=f"training table {training_path.name}",
            intersectional=spec.evaluation.intersectional,
        )
        if training.feature_names != evaluation.feature_names:
            raise DataError(
                "the training and evaluation tables give different feature columns; give both the same columns"
            )

    missing_training = spec.needs_training_table()
    if missing_training and training is None:
        raise SpecError(
            f"data.training: recipes {', '.join(missing_training)} need a training table (calibration or "
            "training data) but the spec names none; add data.training or drop those recipes"
        )
    return AuditInputs(model, model_path, input_specs, interpretation, evaluation, training)


def _probe_inputs(table: Any, spec: JobSpec, input_specs: list[InputSpec], source: str) -> dict[str, np.ndarray]:
    get_column(table, spec.data.label, role="label", source=source)
    for name in spec.data.sensitive:
        get_column(table, name, role="sensitive", source=source)
    inputs, _ = build_inputs(table, spec.data, input_specs, source=source)
    return {name: array[:8] for name, array in inputs.items()}


def resolve_device(device: str | None) -> str:
    if device is not None:
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


class VariantEvaluator:
    """Runs a model on the evaluation table and computes its metrics against the base predictions."""

    def __init__(self, spec: JobSpec, inputs: AuditInputs, device: str) -> None:
        self.spec = spec
        self.inputs = inputs
        self.device = device
        self.bootstrap = BootstrapSettings(
            resamples=spec.bootstrap.resamples, confidence=spec.bootstrap.confidence, seed=spec.bootstrap.seed
        )
        self.base_predictions: np.ndarray | None = None

    def predict(self, model: onnx.ModelProto) -> np.ndarray:
        session = create_session(model, device=self.device)
        return predict(
            session,
            self.inputs.evaluation.inputs,
            self.inputs.interpretation,
            batch_size=self.spec.evaluation.batch_size,
            output_kind=self.spec.evaluation.output_kind,
            threshold=self.spec.evaluation.threshold,
        )

    def predict_with_thresholds(self, model: onnx.ModelProto, rules: dict[str, Any]) -> np.ndarray:
        """Return predictions with the per-group threshold rules applied to the model's scores."""
        from workers.interventions.thresholds import apply_threshold_rules, model_scores

        data = self.inputs.evaluation
        attribute = rules["attribute"]
        if attribute not in data.groups or data.positive_class is None:
            raise ModelError(
                f"threshold rules for '{attribute}' need a binary model and that sensitive column in the "
                "evaluation table"
            )
        scores = model_scores(model, data.inputs, self.inputs.interpretation.name, self.device)
        codes, names = data.groups[attribute]
        row_groups = np.asarray(names, dtype=object)[codes]
        return apply_threshold_rules(scores, row_groups, rules, positive_class=data.positive_class)

    def evaluate(self, model: onnx.ModelProto, predictions: np.ndarray) -> dict[str, Any]:
        data = self.inputs.evaluation
        n_classes = len(data.class_names)
        out_of_range = (predictions < 0) | (predictions >= n_classes)
        if out_of_range.any():
            raise ModelError(
                f"the model predicted class index {int(predictions[out_of_range][0])}, outside 0..{n_classes - 1}; "
                "check data.classes or data.positive_label against the model's outputs"
            )
        metrics = evaluate_predictions(
            data.labels,
            predictions,
            data.groups,
            n_classes=n_classes,
            class_names=data.class_names,
            positive_class=data.positive_class,
            bootstrap=self.bootstrap,
            min_group_size=self.spec.evaluation.min_group_size,
        )
        result: dict[str, Any] = {"metrics": metrics}
        if self.base_predictions is not None:
            result["change_vs_base"] = compare_predictions(
                data.labels,
                self.base_predictions,
                predictions,
                data.groups,
                n_classes=n_classes,
                class_names=data.class_names,
                positive_class=data.positive_class,
                bootstrap=self.bootstrap,
            )
            result["agreement_with_base"] = float(np.mean(predictions == self.base_predictions))
        session = create_session(model, device=self.device)
        result["latency"] = measure_latency(
            session,
            data.inputs,
            batch_size=self.spec.evaluation.batch_size,
            runs=self.spec.evaluation.latency_runs,
        )
        return result


def _artifact(path: Path, model: onnx.ModelProto, out_dir: Path) -> dict[str, Any]:
    parameters, nonzero = count_parameters(model)
    facts = file_facts(path)
    return {
        "path": path.relative_to(out_dir).as_posix(),
        "bytes": facts["bytes"],
        "gzip_bytes": facts["gzip_bytes"],
        "sha256": facts["sha256"],
        "parameters": parameters,
        "nonzero_parameters": nonzero,
    }


def _method_label(recipe: Recipe) -> str:
    return "+".join(step.method for step in recipe.steps)


def build_variant(recipe: Recipe, base_model: onnx.ModelProto, context: CompressionContext) -> BuiltVariant:
    """Apply a recipe's steps, and its fairness intervention at its placement; return the built variant."""
    from workers.interventions import BuiltVariant, build_with_intervention

    if recipe.intervention is None:
        model, steps = build_variant_model(recipe, base_model, context)
        return BuiltVariant(model=model, steps=steps)
    built = build_with_intervention(recipe, base_model, context)
    validate_model(built.model, source=f"variant '{recipe.name}'")
    return built


def build_variant_model(
    recipe: Recipe, base_model: onnx.ModelProto, context: CompressionContext
) -> tuple[onnx.ModelProto, list[dict[str, Any]]]:
    """Apply a recipe's steps in order; return the model and the time each step took.

    A recipe with a fairness intervention goes through `build_variant`, whose threshold rules this
    function does not return.
    """
    if recipe.intervention is not None:
        built = build_variant(recipe, base_model, context)
        return built.model, built.steps
    model = base_model
    steps = []
    for step in recipe.steps:
        started = time.perf_counter()
        method = get_method(step.method)
        model = method.apply(model, step.config(), context)
        steps.append({"method": step.method, "options": step.options(), "seconds": time.perf_counter() - started})
    validate_model(model, source=f"variant '{recipe.name}'")
    return model, steps


def run_audit(
    spec: JobSpec,
    *,
    out_dir: Path,
    base_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    device: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run every recipe of the spec and write `out_dir/report.json` plus one ONNX file per variant."""
    started_at = datetime.now(timezone.utc)
    out_dir = Path(out_dir)
    notify = progress or (lambda event: None)

    inputs = check_inputs(spec, base_dir=base_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipes = spec.resolved_recipes()
    device = resolve_device(device)
    total = len(recipes) + 1
    logger.info("audit of %s started: %d variants, device %s", inputs.model_path, total, device)

    evaluator = VariantEvaluator(spec, inputs, device)
    variants = [_run_base(spec, inputs, evaluator, out_dir, resume, notify, total)]
    context = _compression_context(spec, inputs, out_dir, device)
    predictions: dict[str, np.ndarray] = {}
    for index, recipe in enumerate(recipes, start=1):
        recipe_context = dataclasses.replace(context, progress=_step_progress(notify, recipe.name, index, total))
        variants.append(
            _run_recipe(spec, recipe, inputs, evaluator, recipe_context, out_dir, resume, notify, index, total, predictions)
        )

    report = build_report(
        spec=spec,
        inputs=inputs,
        variants=variants,
        device=device,
        started_at=started_at,
        finished_at=datetime.now(timezone.utc),
    )
    if any(recipe.intervention is not None for recipe in recipes):
        from workers.interventions.compare import build_comparisons

        results = {variant["name"]: variant for variant in variants}
        report["comparisons"] = build_comparisons(
            recipes, results, predictions, inputs.evaluation, evaluator.bootstrap
        )
    write_json_atomic(out_dir / "report.json", report)
    publish_report(report, out_dir)
    clean_partial_results(out_dir)
    logger.info("audit finished: report at %s", out_dir / "report.json")
    return report


def _step_progress(notify: ProgressCallback, name: str, index: int, total: int) -> Callable[[dict[str, Any]], None]:
    """Forward a method's progress events (one per training epoch) with the variant's name and index."""

    def forward(event: dict[str, Any]) -> None:
        notify({**event, "variant": name, "index": index, "total": total})

    return forward


def _compression_context(spec: JobSpec, inputs: AuditInputs, out_dir: Path, device: str) -> CompressionContext:
    calibration = None
    labels = None
    if inputs.training is not None:
        rng = np.random.default_rng(spec.seed)
        rows = inputs.training.rows
        take = min(rows, spec.evaluation.calibration_rows)
        index = np.sort(rng.choice(rows, size=take, replace=False))
        sample = inputs.training.take(index)
        calibration = sample.inputs
        labels = sample.labels
    work_dir = out_dir / PARTIAL_DIR / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    return CompressionContext(
        work_dir=work_dir,
        seed=spec.seed,
        device=device,
        calibration=calibration,
        labels=labels,
        training=inputs.training,
        output_name=inputs.interpretation.name,
        output_kind=spec.evaluation.output_kind,
    )


def _run_base(
    spec: JobSpec,
    inputs: AuditInputs,
    evaluator: VariantEvaluator,
    out_dir: Path,
    resume: bool,
    notify: ProgressCallback,
    total: int,
) -> dict[str, Any]:
    key = recipe_key(None, spec)
    notify({"event": "variant_started", "variant": "base", "index": 0, "total": total})
    stored = load_partial(out_dir, "base", key) if resume else None
    predictions = load_predictions(out_dir, "base") if stored else None
    if stored is not None and predictions is not None:
        evaluator.base_predictions = predictions
        result = stored["result"]
    else:
        started = time.perf_counter()
        path = out_dir / "base.onnx"
        save_model(inputs.model, path)
        predictions = evaluator.predict(inputs.model)
        evaluation = evaluator.evaluate(inputs.model, predictions)
        evaluator.base_predictions = predictions
        result = {
            "name": "base",
            "method": "none",
            "steps": [],
            "status": "succeeded",
            "artifact": _artifact(path, inputs.model, out_dir),
            "checks": {"onnx_checker": True, "runs": True, "agreement_with_base": 1.0},
            "metrics": evaluation["metrics"],
            "latency": evaluation["latency"],
            "timings": {"compress_seconds": 0.0, "evaluate_seconds": time.perf_counter() - started},
            "warnings": list(inputs.evaluation.warnings) + evaluation["metrics"].get("warnings", []),
        }
        store_partial(out_dir, "base", key, result, predictions)
    notify({"event": "variant_finished", "variant": "base", "status": "succeeded", "index": 0, "total": total})
    return result


def _run_recipe(
    spec: JobSpec,
    recipe: Recipe,
    inputs: AuditInputs,
    evaluator: VariantEvaluator,
    context: CompressionContext,
    out_dir: Path,
    resume: bool,
    notify: ProgressCallback,
    index: int,
    total: int,
    predictions: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    key = recipe_key(recipe, spec)
    notify({"event": "variant_started", "variant": recipe.name, "index": index, "total": total})
    stored = load_partial(out_dir, recipe.name, key) if resume else None
    if stored is not None:
        result = stored["result"]
        variant_predictions = load_predictions(out_dir, recipe.name)
        logger.info("variant %s reused from an earlier run", recipe.name)
    else:
        result, variant_predictions = _build_and_evaluate(spec, recipe, inputs, evaluator, context, out_dir)
        store_partial(out_dir, recipe.name, key, result, variant_predictions)
    if predictions is not None and variant_predictions is not None:
        predictions[recipe.name] = variant_predictions
    notify(
        {
            "event": "variant_finished",
            "variant": recipe.name,
            "status": result["status"],
            "error": result.get("error"),
            "index": index,
            "total": total,
        }
    )
    return result


def _build_and_evaluate(
    spec: JobSpec,
    recipe: Recipe,
    inputs: AuditInputs,
    evaluator: VariantEvaluator,
    context: CompressionContext,
    out_dir: Path,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Build, save and evaluate one recipe's variant; return its report entry and its predictions."""
    result: dict[str, Any] = {
        "name": recipe.name,
        "method": _method_label(recipe),
        "steps": [{"method": step.method, "options": step.options()} for step in recipe.steps],
        "intervention": recipe.intervention.model_dump() if recipe.intervention else None,
    }
    started = time.perf_counter()
    try:
        built = build_variant(recipe, inputs.model, context)
        compress_seconds = time.perf_counter() - started
        path = out_dir / f"{recipe.name}.onnx"
        save_model(built.model, path)
        reloaded = load_model(path)
        if built.thresholds is not None:
            _write_thresholds(built, out_dir / f"{recipe.name}.thresholds.json", result, out_dir)
            predictions = evaluator.predict_with_thresholds(reloaded, built.thresholds)
        else:
            predictions = evaluator.predict(reloaded)
        evaluation = evaluator.evaluate(reloaded, predictions)
    except (CompressionError, ModelError, DataError, ValueError) as error:
        logger.warning("variant %s failed: %s", recipe.name, error)
        return _failed(result, str(error), started), None
    except Exception as error:  # a bug or a library failure must not stop the other variants
        logger.error("variant %s failed unexpectedly:\n%s", recipe.name, traceback.format_exc())
        return _failed(result, f"unexpected {type(error).__name__}: {error}", started), None

    result.update(
        {
            "status": "succeeded",
            "steps": built.steps,
            "artifact": _artifact(path, reloaded, out_dir),
            "checks": {
                "onnx_checker": True,
                "runs": True,
                "agreement_with_base": evaluation["agreement_with_base"],
            },
            "metrics": evaluation["metrics"],
            "change_vs_base": evaluation["change_vs_base"],
            "latency": evaluation["latency"],
            "timings": {
                "compress_seconds": compress_seconds,
                "evaluate_seconds": time.perf_counter() - started - compress_seconds,
            },
            "warnings": (
                result.get("warnings", [])
                + built.warnings
                + _model_warnings(reloaded, spec)
                + evaluation["metrics"].get("warnings", [])
            ),
        }
    )
    return result, predictions


def _write_thresholds(built: BuiltVariant, path: Path, result: dict[str, Any], out_dir: Path) -> None:
    """Write the variant's threshold rules beside its ONNX file and record them in its report entry."""
    from workers.interventions.thresholds import warning_text, write_rules

    write_rules(built.thresholds, path)
    attribute = built.thresholds["attribute"]
    result["thresholds"] = {"path": path.relative_to(out_dir).as_posix(), "attribute": attribute}
    result["warnings"] = [warning_text(path.name, attribute)]


def _model_warnings(model: onnx.ModelProto, spec: JobSpec) -> list[str]:
    if any(node.op_type == "DynamicQuantizeLinear" for node in model.graph.node):
        return [
            "activations are quantized with a scale computed per call, so predictions depend on how rows are "
            f"batched; this audit ran batches of {spec.evaluation.batch_size} rows (evaluation.batch_size)"
        ]
    return []


def _failed(result: dict[str, Any], message: str, started: float) -> dict[str, Any]:
    result.update(
        {
            "status": "failed",
            "error": message,
            "timings": {"compress_seconds": time.perf_counter() - started, "evaluate_seconds": 0.0},
            "warnings": [],
        }
    )
    return result
