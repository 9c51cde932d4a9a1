"""The job spec (version 1): one schema for the CLI's YAML file and the API's JSON body.

Importing this module loads neither torch nor ONNX Runtime, so the gateway can validate
jobs without the model stack.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from workers.compression import get_method, method_names

SCHEMA_VERSION = 1
RECIPE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
INTERVENTION_METHODS = ("reweighing", "resampling", "adversarial", "fair_pruning", "thresholds")
PLACEMENTS = ("before", "during", "after")


class SpecError(ValueError):
    """The job spec is invalid; the message names the field and the value."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(StrictModel):
    evaluation: str = Field(description="Evaluation table: CSV, Parquet or NPZ (CLI: a path; API: a dataset id).")
    training: str | None = Field(
        default=None,
        description="Training table for calibration and training-based methods; never the evaluation table.",
    )
    label: str = Field(description="Column (or NPZ array) holding the true label.")
    positive_label: str | int | float | bool | None = Field(
        default=None, description="Label value of the positive class; required unless labels are 0/1."
    )
    classes: list[str | int] | None = Field(
        default=None,
        description="Multiclass only: label values in the order of the model's outputs.",
    )
    sensitive: list[str] = Field(min_length=1, description="Sensitive columns; several also give intersectional groups.")
    features: list[str] | None = Field(
        default=None,
        description="Feature columns stacked in this order into the model's single input; default: every other column.",
    )
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="CSV field delimiter.")
    max_groups: int = Field(
        default=30,
        ge=2,
        description="Largest number of groups a sensitive column may have; more usually means a continuous "
        "column that needs binning.",
    )
    missing_sensitive: Literal["error", "group"] = Field(
        default="error",
        description="What to do with a missing sensitive value: reject the table, or put those rows in a group named 'missing'.",
    )

    @field_validator("sensitive")
    @classmethod
    def _unique_sensitive(cls, value: list[str]) -> list[str]:
        duplicates = sorted({name for name in value if value.count(name) > 1})
        if duplicates:
            raise ValueError(f"sensitive columns are listed twice: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _roles_do_not_overlap(self) -> DataSpec:
        if self.label in self.sensitive:
            raise ValueError(f"column '{self.label}' is both the label and a sensitive column")
        # A sensitive column may also feed the model (age often does), but the label never may.
        if self.features is not None and self.label in self.features:
            raise ValueError(
                f"column '{self.label}' is the label and is also listed in features; remove it from features"
            )
        if self.classes is not None and self.positive_label is not None:
            raise ValueError("give either classes (multiclass) or positive_label (binary), not both")
        return self


class Step(BaseModel):
    """One compression step: `method` plus that method's own options."""

    model_config = ConfigDict(extra="allow")

    method: str

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in method_names():
            raise ValueError(f"unknown method '{value}'; known methods: {', '.join(method_names())}")
        return value

    @model_validator(mode="after")
    def _valid_options(self) -> Step:
        method = get_method(self.method)
        try:
            method.config_model.model_validate(self.options())
        except ValidationError as error:
            known = ", ".join(name for name in method.config_model.model_fields) or "none"
            problems = []
            for item in error.errors():
                location = ".".join(str(part) for part in item["loc"]) or "options"
                if item["type"] == "extra_forbidden":
                    problems.append(f"unknown option '{location}' (options of {self.method}: {known})")
                elif item["type"] == "missing":
                    problems.append(f"{location}: required option missing")
                else:
                    problems.append(f"{location}: {_strip_prefix(item['msg'])}")
            raise ValueError(f"invalid options for method '{self.method}': {'; '.join(problems)}") from error
        return self

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def config(self) -> Any:
        """Return the method's typed config for this step."""
        return get_method(self.method).config_model.model_validate(self.options())


class Intervention(StrictModel):
    """A fairness intervention on a recipe, placed before, during or after its compression steps."""

    method: Literal["reweighing", "resampling", "adversarial", "fair_pruning", "thresholds"]
    placement: Literal["before", "during", "after"]
    attribute: str | None = Field(default=None, description="Sensitive column to act on; default: the first one.")
    objective: Literal["equalized_odds", "demographic_parity"] = Field(
        default="equalized_odds",
        description="Fairness criterion of adversarial (what the adversary sees), fair_pruning and thresholds.",
    )
    strength: float | None = Field(
        default=None,
        ge=0.0,
        le=100.0,
        description="Weight of the fairness term: the adversary's loss (adversarial, default 1.0) or the gap "
        "saliency (fair_pruning, default 0.3).",
    )
    epochs: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Epochs of fairness training run before or after compression (reweighing, resampling, adversarial).",
    )
    share: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="fair_pruning before or after compression: share of the non-zero weights it removes.",
    )


class Recipe(StrictModel):
    name: str = Field(pattern=RECIPE_NAME_PATTERN, description="Variant name: letters, digits, '.', '_' and '-'.")
    steps: list[Step] = Field(min_length=1)
    intervention: Intervention | None = None

    @field_validator("name")
    @classmethod
    def _not_base(cls, value: str) -> str:
        if value == "base":
            raise ValueError("the name 'base' is reserved for the uncompressed model")
        return value


class BootstrapSpec(StrictModel):
    resamples: int = Field(default=1000, ge=0, le=100_000, description="Bootstrap resamples; 0 turns intervals off.")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    seed: int = 0


class GateRule(StrictModel):
    metric: str
    attribute: str | None = None
    max: float | None = None
    min: float | None = None
    max_drop: float | None = None
    max_increase: float | None = None

    @model_validator(mode="after")
    def _one_limit(self) -> GateRule:
        limits = [name for name in ("max", "min", "max_drop", "max_increase") if getattr(self, name) is not None]
        if not limits:
            raise ValueError(f"gate rule for '{self.metric}' sets no limit; give one of max, min, max_drop, max_increase")
        for name in limits:
            limit = getattr(self, name)
            if not math.isfinite(limit):
                raise ValueError(f"gate rule for '{self.metric}': {name} must be a finite number, got {limit}")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(
                f"gate rule for '{self.metric}': min {self.min} is above max {self.max}, so nothing can pass"
            )
        return self


class GateSpec(StrictModel):
    decision: Literal["bound", "point"] = "bound"
    rules: list[GateRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_rules(self) -> GateSpec:
        if not self.rules:
            raise ValueError("the gate has no rules; list at least one rule, or omit the gate section")
        return self


class EvaluationSpec(StrictModel):
    batch_size: int = Field(default=1024, ge=1, le=1_000_000, description="Rows per ONNX Runtime call.")
    min_group_size: int = Field(default=30, ge=1, description="Groups with fewer rows are flagged as small.")
    latency_runs: int = Field(default=20, ge=0, le=10_000, description="Timed batches for mean latency; 0 skips it.")
    intersectional: bool = Field(default=True, description="Add the joint groups of several sensitive columns.")
    output: str | None = Field(default=None, description="Model output holding the prediction; default: detected.")
    output_kind: Literal["auto", "logits", "probabilities", "labels"] = Field(
        default="auto", description="How to read a single-score output: logits (threshold 0) or probabilities (0.5)."
    )
    threshold: float | None = Field(default=None, description="Decision threshold for a single-score output.")
    calibration_rows: int = Field(
        default=2048, ge=1, description="Training rows passed to methods that calibrate, sampled with the job seed."
    )


class JobSpec(StrictModel):
    schema_version: Literal[1] = SCHEMA_VERSION
    model: str = Field(description="ONNX classifier (CLI: a path; API: a model id).")
    data: DataSpec
    recipes: list[Recipe] | None = Field(default=None, description="Variants to build; omitted means the default set.")
    bootstrap: BootstrapSpec = Field(default_factory=BootstrapSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    gate: GateSpec | None = None
    seed: int = Field(default=0, description="Seed for compression methods that sample or train.")
    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        description="API only: http(s) URL that receives a signed POST with the job summary when the job ends. "
        "The engine ignores it.",
    )

    @model_serializer(mode="wrap")
    def _omit_unset_callback(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Dumps leave out a callback_url of None, so the job section of a report has no callback key.
        data = handler(self)
        if self.callback_url is None:
            data.pop("callback_url", None)
        return data

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        problem = f"expected an absolute http or https URL with a host, got {value[:200]!r}"
        try:
            parsed = urlsplit(value)
            parsed.port  # noqa: B018 - raises ValueError on a port out of range
        except ValueError as error:
            raise ValueError(f"{problem}: {error}") from error
        if parsed.scheme not in ("http", "https") or not parsed.hostname or any(char.isspace() for char in value):
            raise ValueError(problem)
        return value

    @field_validator("recipes")
    @classmethod
    def _unique_names(cls, value: list[Recipe] | None) -> list[Recipe] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("recipes is empty; omit it for the default set or list at least one recipe")
        names = [recipe.name for recipe in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"recipe names must be unique; repeated: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _valid_interventions(self) -> JobSpec:
        for recipe in self.recipes or []:
            intervention = recipe.intervention
            if intervention is None:
                continue
            if intervention.attribute is None:
                intervention.attribute = self.data.sensitive[0]
            if intervention.strength is None:
                intervention.strength = DEFAULT_STRENGTH.get(intervention.method, 1.0)
            attributes = list(self.data.sensitive)
            if len(attributes) > 1 and self.evaluation.intersectional:
                attributes.append("&".join(attributes))
            if intervention.attribute not in attributes:
                raise ValueError(
                    f"recipe '{recipe.name}': intervention attribute '{intervention.attribute}' is not a sensitive "
                    f"column; use one of {', '.join(attributes)}"
                )
            problem = placement_problem(recipe)
            if problem is not None:
                raise ValueError(f"recipe '{recipe.name}': {problem}")
        training_recipes = self.training_recipes()
        if training_recipes and self.data.training is None:
            raise ValueError(
                f"recipes {', '.join(training_recipes)} train or fit on data.training (finetune, distill or a "
                "fairness intervention), but the spec names no training table; add data.training"
            )
        return self

    def training_recipes(self) -> list[str]:
        """Return the recipes that train or fit on the training table: training methods and interventions."""
        return [
            recipe.name
            for recipe in self.recipes or []
            if recipe.intervention is not None or any(get_method(step.method).trains for step in recipe.steps)
        ]

    def resolved_recipes(self) -> list[Recipe]:
        return list(self.recipes) if self.recipes is not None else default_recipes()

    def needs_training_table(self) -> list[str]:
        """Return the recipes that cannot run without `data.training`."""
        return [
            recipe.name
            for recipe in self.resolved_recipes()
            if any(get_method(step.method).needs_calibration or get_method(step.method).trains for step in recipe.steps)
            or recipe.intervention
        ]


# Default weight of the fairness term per intervention. fair_pruning's gap saliency at 1.0 removed
# weights that accuracy needed at 90% sparsity on Adult, so its default is lower.
DEFAULT_STRENGTH = {"adversarial": 1.0, "fair_pruning": 0.3}
# Interventions that change how the recipe's training steps train, and the methods that train.
TRAINING_INTERVENTIONS = ("reweighing", "resampling", "adversarial")
TRAINING_STEP_METHODS = ("finetune", "distill")


def placement_problem(recipe: Recipe) -> str | None:
    """Return why the recipe's intervention cannot be placed "during" its steps, or None when it can."""
    intervention = recipe.intervention
    if intervention is None or intervention.placement != "during":
        return None
    methods = [step.method for step in recipe.steps]
    if intervention.method in TRAINING_INTERVENTIONS and not set(methods) & set(TRAINING_STEP_METHODS):
        return (
            f"intervention {intervention.method} placed during compression acts inside a training step, but the "
            f"steps are {', '.join(methods)}; add a finetune or distill step, or place it before or after"
        )
    if intervention.method == "fair_pruning" and "prune" not in methods:
        return (
            f"intervention fair_pruning placed during compression chooses the weights of a prune step, but the "
            f"steps are {', '.join(methods)}; add a prune step, or place it before or after"
        )
    return None


DEFAULT_RECIPES: list[dict[str, Any]] = [
    {"name": "int8-dynamic", "steps": [{"method": "quantize_dynamic"}]},
    {"name": "int8-static-minmax", "steps": [{"method": "quantize_static", "calibration": "minmax"}]},
    {"name": "int8-static-entropy", "steps": [{"method": "quantize_static", "calibration": "entropy"}]},
    {"name": "int8-static-percentile", "steps": [{"method": "quantize_static", "calibration": "percentile"}]},
    {"name": "fp16", "steps": [{"method": "fp16"}]},
    {"name": "prune-local-50", "steps": [{"method": "prune", "scope": "local", "sparsity": 0.5}]},
    {"name": "prune-global-90", "steps": [{"method": "prune", "scope": "global", "sparsity": 0.9}]},
    {"name": "prune-structured-50", "steps": [{"method": "prune_structured", "ratio": 0.5}]},
    {"name": "low-rank-50", "steps": [{"method": "low_rank", "rank_ratio": 0.5}]},
    {"name": "low-rank-energy-80", "steps": [{"method": "low_rank", "energy": 0.8}]},
    {
        "name": "prune-50-then-int8",
        "steps": [{"method": "prune", "scope": "global", "sparsity": 0.5}, {"method": "quantize_static"}],
    },
]


def default_recipes() -> list[Recipe]:
    return [Recipe.model_validate(recipe) for recipe in DEFAULT_RECIPES]


def _strip_prefix(message: str) -> str:
    return re.sub(r"^(Value|Assertion) error, ", "", message)


def _model_at(model: type[BaseModel], parts: tuple[Any, ...]) -> type[BaseModel] | None:
    """Follow field names (list indexes skipped) from `model` to the nested model they lead to."""
    for part in parts:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        nested = _nested_model(field.annotation)
        if nested is None:
            return None
        model = nested
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _nested_model(argument)
        if found is not None:
            return found
    return None


def format_validation_error(error: ValidationError, root: type[BaseModel] | None = None) -> str:
    """Render pydantic errors as one line per field, for the CLI and the API."""
    root = root or JobSpec
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "spec"
        message = _strip_prefix(item["msg"])
        received = item.get("input")
        if item["type"] == "extra_forbidden":
            parent = _model_at(root, tuple(item["loc"][:-1]))
            known = ", ".join(parent.model_fields) if parent is not None else ""
            lines.append(f"{location}: unknown key '{item['loc'][-1]}'" + (f"; known keys here: {known}" if known else ""))
        elif item["type"] in ("missing",):
            lines.append(f"{location}: field required")
        elif isinstance(received, (str, int, float, bool)) and item["type"] not in ("value_error",):
            lines.append(f"{location}: {message} (got {received!r})")
        else:
            lines.append(f"{location}: {message}")
    return "\n".join(lines)


def parse_spec(raw: dict[str, Any]) -> JobSpec:
    """Validate a job spec given as a mapping; raise SpecError naming each invalid field."""
    if not isinstance(raw, dict):
        raise SpecError(f"the job spec must be a mapping of keys to values, got {type(raw).__name__}")
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as error:
        raise SpecError("invalid job spec:\n" + format_validation_error(error)) from error


def load_spec_file(path: Path) -> JobSpec:
    """Read a YAML (or JSON) job spec file and validate it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as error:
        raise SpecError(f"job spec file not found: {path}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read job spec file {path}: {error}") from error
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        detail = str(error).replace('"<unicode string>"', str(path))
        raise SpecError(f"job spec file {path} is not valid YAML: {detail}") from error
    return parse_spec(raw)


def load_gate_file(path: Path) -> GateSpec:
    """Read a gate policy YAML (or JSON) file: the keys of a job spec's `gate` section."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as error:
        raise SpecError(f"gate policy file not found: {path}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read gate policy file {path}: {error}") from error
    except yaml.YAMLError as error:
        raise SpecError(f"gate policy file {path} is not valid YAML: {error}") from error
    if isinstance(raw, dict) and set(raw) == {"gate"}:
        raw = raw["gate"]
    if not isinstance(raw, dict):
        raise SpecError(
            f"gate policy file {path} must hold a mapping with 'decision' and 'rules', got {type(raw).__name__}"
        )
    try:
        return GateSpec.model_validate(raw)
    except ValidationError as error:
        raise SpecError(f"invalid gate policy in {path}:\n" + format_validation_error(error)) from error
