"""The study: every compression method with no intervention and with each intervention placed before,
during and after it, audited in one run and summarized as a table and a plot.

`fairsqueeze study --spec SPEC --out DIR` writes `DIR/report.json` (the audit of the whole grid, with
its comparison section), `DIR/study.json` and `DIR/study.md` (one row per variant) and `DIR/study.svg`
(accuracy against equalized odds difference). Combinations that cannot be placed (a training
intervention "during" a recipe without a training step, fair_pruning "during" one without a prune
step) are listed as skipped.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import time
from pathlib import Path
from typing import Any

from workers.spec import INTERVENTION_METHODS, PLACEMENTS, JobSpec, Recipe, SpecError, placement_problem

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INVALID_INPUT = 2
GAP = "equalized_odds_difference"

# The grid's compressions: 90% global magnitude pruning then fine-tuning, a distilled student with a
# quarter of each hidden layer, and rank-quarter factorization then fine-tuning.
DEFAULT_COMPRESSIONS: dict[str, list[dict[str, Any]]] = {
    "prune90-ft": [
        {"method": "prune", "scope": "global", "sparsity": 0.9},
        {"method": "finetune", "epochs": 10},
    ],
    "distill25": [{"method": "distill", "width_ratio": 0.25, "epochs": 10}],
    "lowrank25-ft": [{"method": "low_rank", "rank_ratio": 0.25}, {"method": "finetune", "epochs": 10}],
}


def study_recipes(
    compressions: dict[str, list[dict[str, Any]]], interventions: list[str], attribute: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Return the grid's recipes (as spec mappings) and the combinations skipped with the reason."""
    recipes, skipped = [], []
    for name, steps in compressions.items():
        recipes.append({"name": name, "steps": steps})
        for method in interventions:
            for placement in PLACEMENTS:
                intervention = {"method": method, "placement": placement}
                if attribute is not None:
                    intervention["attribute"] = attribute
                recipe = {"name": f"{name}.{method}.{placement}", "steps": steps, "intervention": intervention}
                problem = placement_problem(Recipe.model_validate(recipe))
                if problem is None:
                    recipes.append(recipe)
                else:
                    skipped.append({"compression": name, "intervention": method, "placement": placement, "reason": problem})
    return recipes, skipped


def study_spec(spec: JobSpec, compressions: dict[str, list[dict[str, Any]]], interventions: list[str], attribute: str | None) -> tuple[JobSpec, list[dict[str, str]]]:
    """Return the job spec with the grid's recipes in place of its own, and the skipped combinations."""
    from workers.spec import parse_spec

    recipes, skipped = study_recipes(compressions, interventions, attribute)
    raw = spec.model_dump(mode="json", exclude_unset=True)
    raw["recipes"] = recipes
    raw.pop("gate", None)
    return parse_spec(raw), skipped


def compressions_from_spec(spec: JobSpec) -> dict[str, list[dict[str, Any]]]:
    """Return the spec's recipes without an intervention as compressions, or the defaults when it has none."""
    own = {
        recipe.name: [{"method": step.method, **step.options()} for step in recipe.steps]
        for recipe in spec.recipes or []
        if recipe.intervention is None
    }
    return own or dict(DEFAULT_COMPRESSIONS)


def run_study(
    spec: JobSpec,
    *,
    out_dir: Path,
    base_dir: Path | None = None,
    compressions: dict[str, list[dict[str, Any]]] | None = None,
    interventions: list[str] | None = None,
    attribute: str | None = None,
    device: str | None = None,
    resume: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Audit the grid and write report.json, study.json, study.md and study.svg under `out_dir`."""
    from workers.pipeline import run_audit

    compressions = compressions or compressions_from_spec(spec)
    interventions = interventions or list(INTERVENTION_METHODS)
    grid, skipped = study_spec(spec, compressions, interventions, attribute)
    attribute = attribute or grid.data.sensitive[0]

    started = time.perf_counter()
    report = run_audit(grid, out_dir=out_dir, base_dir=base_dir, progress=progress, device=device, resume=resume)
    seconds = time.perf_counter() - started

    rows = study_rows(report, attribute, _grid_labels(grid, compressions))
    study = {"attribute": attribute, "seconds": seconds, "rows": rows, "skipped": skipped}
    out_dir = Path(out_dir)
    (out_dir / "study.json").write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
    (out_dir / "study.md").write_text(markdown_table(rows, attribute, skipped), encoding="utf-8")
    (out_dir / "study.svg").write_text(svg_plot(rows, attribute), encoding="utf-8")
    logger.info("study of %s variants finished in %.0f s", len(rows), seconds)
    return study


def _grid_labels(grid: JobSpec, compressions: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Map each recipe name to its (compression, intervention, placement)."""
    labels = {"base": ("none", "none", "none")}
    for recipe in grid.resolved_recipes():
        if recipe.intervention is None:
            labels[recipe.name] = (recipe.name, "none", "none")
            continue
        compression = recipe.name.rsplit(".", 2)[0]
        labels[recipe.name] = (compression, recipe.intervention.method, recipe.intervention.placement)
    return labels


def study_rows(
    report: dict[str, Any], attribute: str, labels: dict[str, tuple[str, str, str]]
) -> list[dict[str, Any]]:
    """Return one row per variant: compression, intervention, placement, accuracy, gap and the paired
    differences against the same compression without intervention."""
    comparisons = {entry["variant"]: entry for entry in report.get("comparisons", [])}
    rows = []
    for variant in report["variants"]:
        name = variant["name"]
        compression, method, placement = labels.get(name, (name, "none", "none"))
        row: dict[str, Any] = {
            "variant": name,
            "compression": compression,
            "intervention": method,
            "placement": placement,
            "status": variant["status"],
        }
        if variant["status"] != "succeeded":
            row["error"] = variant.get("error")
            rows.append(row)
            continue
        gap = variant["metrics"]["gaps"].get(attribute, {}).get(GAP, {})
        row.update(
            {
                "accuracy": variant["metrics"]["overall"]["accuracy"],
                "gap": gap.get("value"),
                "gap_ci": gap.get("ci"),
                "parameters": variant["artifact"]["parameters"],
                "nonzero_parameters": variant["artifact"]["nonzero_parameters"],
                "thresholds": "thresholds" in variant,
            }
        )
        comparison = comparisons.get(name)
        if comparison is not None and comparison["status"] == "compared":
            row["accuracy_change"] = comparison["change"]["overall"]["accuracy_change"]
            row["gap_change"] = comparison["change"]["gaps"].get(attribute, {}).get(GAP)
        rows.append(row)
    return rows


def _estimate(entry: dict[str, Any] | None, *, signed: bool = True) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    pattern = "{:+.3f}" if signed else "{:.3f}"
    text = pattern.format(entry["value"])
    if entry.get("ci"):
        text += f" [{pattern.format(entry['ci'][0])}, {pattern.format(entry['ci'][1])}]"
    return text


def markdown_table(rows: list[dict[str, Any]], attribute: str, skipped: list[dict[str, str]]) -> str:
    """Render the study rows as a Markdown table, with the skipped combinations below it."""
    lines = [
        f"| compression | intervention | placement | accuracy | Δ accuracy vs none | EOD {attribute} "
        f"| Δ EOD vs none | non-zero parameters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["status"] != "succeeded":
            lines.append(
                f"| {row['compression']} | {row['intervention']} | {row['placement']} | failed: "
                f"{str(row.get('error'))[:80]} | | | | |"
            )
            continue
        gap = _estimate({"value": row["gap"], "ci": row["gap_ci"]}, signed=False)
        lines.append(
            f"| {row['compression']} | {row['intervention']} | {row['placement']} | {row['accuracy']:.4f} "
            f"| {_estimate(row.get('accuracy_change'))} | {gap} | {_estimate(row.get('gap_change'))} "
            f"| {row['nonzero_parameters']:,} of {row['parameters']:,} |"
        )
    for entry in skipped:
        lines.append(f"\nSkipped {entry['compression']} with {entry['intervention']} {entry['placement']}: {entry['reason']}.")
    return "\n".join(lines) + "\n"


PLACEMENT_COLORS = {"none": "#57606a", "before": "#0969da", "during": "#bf3989", "after": "#1a7f37"}
PLOT_WIDTH, PLOT_HEIGHT, MARGIN = 640, 420, 56


def svg_plot(rows: list[dict[str, Any]], attribute: str) -> str:
    """Draw accuracy (y) against the equalized odds difference (x), one dot per variant, coloured by placement."""
    points = [row for row in rows if row["status"] == "succeeded" and row.get("gap") is not None]
    if not points:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>\n'
    xs = [row["gap"] for row in points]
    ys = [row["accuracy"] for row in points]
    x_low, x_high = _padded(min(xs), max(xs))
    y_low, y_high = _padded(min(ys), max(ys))

    def to_x(value: float) -> float:
        return MARGIN + (value - x_low) / (x_high - x_low) * (PLOT_WIDTH - 2 * MARGIN)

    def to_y(value: float) -> float:
        return PLOT_HEIGHT - MARGIN - (value - y_low) / (y_high - y_low) * (PLOT_HEIGHT - 2 * MARGIN)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect x="{MARGIN}" y="{MARGIN}" width="{PLOT_WIDTH - 2 * MARGIN}" height="{PLOT_HEIGHT - 2 * MARGIN}" '
        'fill="none" stroke="#8c959f"/>',
        f'<text x="{PLOT_WIDTH / 2}" y="{PLOT_HEIGHT - 16}" text-anchor="middle">equalized odds difference '
        f"({html.escape(attribute)})</text>",
        f'<text x="16" y="{PLOT_HEIGHT / 2}" text-anchor="middle" transform="rotate(-90 16 {PLOT_HEIGHT / 2})">'
        "accuracy</text>",
    ]
    for value, anchor in ((x_low, "start"), (x_high, "end")):
        parts.append(f'<text x="{to_x(value):.1f}" y="{PLOT_HEIGHT - MARGIN + 14}" text-anchor="{anchor}">{value:.3f}</text>')
    for value in (y_low, y_high):
        parts.append(f'<text x="{MARGIN - 4}" y="{to_y(value) + 4:.1f}" text-anchor="end">{value:.3f}</text>')
    for row in points:
        color = "#000000" if row["variant"] == "base" else PLACEMENT_COLORS.get(row["placement"], "#57606a")
        radius = 6 if row["variant"] == "base" else 4
        parts.append(
            f'<circle cx="{to_x(row["gap"]):.1f}" cy="{to_y(row["accuracy"]):.1f}" r="{radius}" fill="{color}" '
            f'fill-opacity="0.8"><title>{html.escape(row["variant"])}</title></circle>'
        )
    legend = [("base", "#000000"), *PLACEMENT_COLORS.items()]
    for index, (label, color) in enumerate(legend):
        x = MARGIN + 8 + index * 90
        parts.append(f'<circle cx="{x}" cy="{MARGIN - 18}" r="4" fill="{color}"/>')
        parts.append(f'<text x="{x + 8}" y="{MARGIN - 14}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _padded(low: float, high: float) -> tuple[float, float]:
    span = high - low if high > low else max(abs(high), 1e-3)
    return low - 0.05 * span, high + 0.05 * span


# Command line


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, required=True, help="Job spec YAML file: model, data and bootstrap.")
    parser.add_argument("--out", type=Path, required=True, help="Folder for report.json, study.md, study.json, study.svg.")
    parser.add_argument(
        "--compressions",
        help="Comma-separated compressions from the built-in grid "
        f"({', '.join(DEFAULT_COMPRESSIONS)}); default: the spec's recipes without intervention, else all of these.",
    )
    parser.add_argument(
        "--interventions",
        help=f"Comma-separated interventions ({', '.join(INTERVENTION_METHODS)}); default: all.",
    )
    parser.add_argument("--attribute", help="Sensitive column the interventions act on (default: the first one).")
    parser.add_argument("--resamples", type=int, help="Bootstrap resamples (default: the spec's).")
    parser.add_argument("--seed", type=int, help="Seed for training, sampling and the bootstrap.")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when torch sees a GPU).")
    parser.add_argument("--resume", action="store_true", help="Reuse variants finished by an interrupted run in --out.")


def _names(text: str | None, known: list[str], flag: str) -> list[str] | None:
    if text is None:
        return None
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise SpecError(f"{flag}: unknown or missing names {', '.join(unknown) or text!r}; choose from {', '.join(known)}")
    return chosen


def run_study_command(args: argparse.Namespace) -> int:
    """Run the study from parsed arguments; return the process exit code."""
    from rich.console import Console
    from rich.markup import escape

    from workers.console import configure_logging
    from workers.data import DataError
    from workers.onnx_model import ModelError
    from workers.spec import load_spec_file, parse_spec

    configure_logging()
    console = Console(stderr=True)
    try:
        spec = load_spec_file(args.spec)
        raw = spec.model_dump(mode="json", exclude_unset=True)
        if args.resamples is not None:
            raw.setdefault("bootstrap", {})["resamples"] = args.resamples
        if args.seed is not None:
            raw.setdefault("bootstrap", {})["seed"] = args.seed
            raw["seed"] = args.seed
        spec = parse_spec(raw)
        names = _names(args.compressions, list(DEFAULT_COMPRESSIONS), "--compressions")
        compressions = {name: DEFAULT_COMPRESSIONS[name] for name in names} if names else None
        interventions = _names(args.interventions, list(INTERVENTION_METHODS), "--interventions")

        def on_progress(event: dict[str, Any]) -> None:
            if event["event"] == "variant_finished":
                console.print(f"{event['index'] + 1}/{event['total']} {event['variant']}: {event['status']}", highlight=False)

        study = run_study(
            spec,
            out_dir=args.out,
            base_dir=args.spec.resolve().parent,
            compressions=compressions,
            interventions=interventions,
            attribute=args.attribute,
            device=args.device,
            resume=args.resume,
            progress=on_progress,
        )
    except (SpecError, DataError, ModelError) as error:
        console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_INVALID_INPUT

    print(markdown_table(study["rows"], study["attribute"], study["skipped"]), end="")
    console.print(f"study of {len(study['rows'])} variants took {study['seconds']:.0f} s; written to {args.out}")
    return EXIT_OK
