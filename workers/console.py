"""The `fairsqueeze audit` command: flags, progress display and the summary table."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workers.spec import DEFAULT_RECIPES, JobSpec, SpecError, load_spec_file, parse_spec

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INVALID_INPUT = 2


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, help="Job spec YAML file; the flags below override its keys.")
    parser.add_argument("--out", type=Path, required=True, help="Folder for report.json and the ONNX variants.")
    parser.add_argument("--model", help="ONNX classifier file (overrides the spec's model).")
    parser.add_argument("--data", help="Evaluation table: CSV, Parquet or NPZ (overrides data.evaluation).")
    parser.add_argument("--training", help="Training table for calibration (overrides data.training).")
    parser.add_argument("--label", help="Label column.")
    parser.add_argument("--positive-label", help="Label value of the positive class.")
    parser.add_argument("--sensitive", help="Sensitive columns, comma-separated (for example sex,race).")
    parser.add_argument("--features", help="Feature columns in model input order, comma-separated.")
    parser.add_argument("--delimiter", help="CSV field delimiter (default ',').")
    parser.add_argument(
        "--recipes",
        help="Comma-separated names from the default recipe set to run "
        f"({', '.join(recipe['name'] for recipe in DEFAULT_RECIPES)}).",
    )
    parser.add_argument("--resamples", type=int, help="Bootstrap resamples (default 1000; 0 turns intervals off).")
    parser.add_argument("--seed", type=int, help="Seed for the bootstrap and for methods that sample.")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when torch sees a GPU).")
    parser.add_argument("--quiet", action="store_true", help="Print no progress and no table.")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace the results of an earlier audit in --out (report, ONNX files) instead of stopping.",
    )


# Files an audit writes directly in its output folder; --overwrite removes them before a new run.
RESULT_PATTERNS = ("*.onnx", "*.thresholds.json", "report.json", "report.html", "gate.json", "junit.xml")


def prepare_output_folder(out: Path, *, overwrite: bool) -> None:
    """Raise SpecError when `out` contains an earlier audit, so its ONNX files are not mistaken for new ones."""
    if not (out / "report.json").is_file():
        return
    if not overwrite:
        raise SpecError(
            f"--out {out} already contains the results of an audit (report.json); choose another folder, or pass "
            "--overwrite to replace them"
        )
    for pattern in RESULT_PATTERNS:
        for path in out.glob(pattern):
            if path.is_file():
                path.unlink()


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def spec_from_arguments(args: argparse.Namespace) -> tuple[JobSpec, Path | None]:
    """Merge the spec file (if any) with the flags; return the spec and the folder its paths are relative to."""
    raw: dict[str, Any] = {}
    base_dir = None
    if args.spec is not None:
        raw = load_spec_file(args.spec).model_dump(mode="json", exclude_unset=True)
        base_dir = args.spec.resolve().parent

    data = raw.setdefault("data", {})
    overrides = {
        "evaluation": args.data,
        "training": args.training,
        "label": args.label,
        "positive_label": args.positive_label,
        "delimiter": args.delimiter,
    }
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    if args.sensitive is not None:
        data["sensitive"] = _split(args.sensitive)
    if args.features is not None:
        data["features"] = _split(args.features)
    if args.model is not None:
        raw["model"] = args.model

    if args.recipes is not None:
        known = {recipe["name"]: recipe for recipe in DEFAULT_RECIPES}
        chosen = _split(args.recipes)
        unknown = [name for name in chosen if name not in known]
        if unknown:
            raise SpecError(f"--recipes: unknown recipe {', '.join(unknown)}; default recipes: {', '.join(known)}")
        raw["recipes"] = [known[name] for name in chosen]
    bootstrap = raw.setdefault("bootstrap", {})
    if args.resamples is not None:
        bootstrap["resamples"] = args.resamples
    if args.seed is not None:
        bootstrap["seed"] = args.seed
        raw["seed"] = args.seed

    # Flag paths are relative to the working directory, spec paths to the spec's folder.
    for key in ("evaluation", "training"):
        if overrides.get(key) is not None:
            data[key] = str(Path(overrides[key]).resolve())
    if args.model is not None:
        raw["model"] = str(Path(args.model).resolve())
    return parse_spec(raw), base_dir


def run_audit_command(args: argparse.Namespace) -> int:
    """Run an audit from parsed arguments; return the process exit code."""
    from workers.data import DataError
    from workers.onnx_model import ModelError
    from workers.pipeline import run_audit

    configure_logging()
    console = Console(stderr=True)
    try:
        spec, base_dir = spec_from_arguments(args)
        prepare_output_folder(args.out, overwrite=args.overwrite)
    except SpecError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_INVALID_INPUT

    total = len(spec.resolved_recipes()) + 1
    try:
        with _progress(console, args.quiet) as progress:
            task = progress.add_task("base", total=total)

            def on_progress(event: dict[str, Any]) -> None:
                if event["event"] == "variant_started":
                    progress.update(task, description=f"{event['variant']}")
                elif event["event"] == "variant_finished":
                    progress.advance(task)
                    if event.get("status") == "failed":
                        progress.console.print(f"[yellow]{event['variant']} failed:[/yellow] {escape(str(event.get('error')))}")

            report = run_audit(spec, out_dir=args.out, base_dir=base_dir, progress=on_progress, device=args.device)
    except (SpecError, DataError, ModelError) as error:
        console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_INVALID_INPUT

    if not args.quiet:
        output = Console()
        if not output.is_terminal:
            output = Console(width=160)
        print_summary(report, output)
    Console(stderr=True).print(f"report written to {args.out / 'report.json'}")
    return EXIT_OK


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    )


def _value(entry: dict[str, Any] | None, *, signed: bool = False, interval: bool = True) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    pattern = "{:+.3f}" if signed else "{:.3f}"
    text = pattern.format(entry["value"])
    ci = entry.get("ci")
    if interval and ci:
        text += f" [{pattern.format(ci[0])}, {pattern.format(ci[1])}]"
    return text


def print_summary(report: dict[str, Any], console: Console) -> None:
    """Print a model table (size, accuracy, agreement) and a fairness table (gaps per sensitive column)."""
    console.print(_model_table(report))
    console.print(_fairness_table(report))
    console.print(
        "EOD: equalized odds difference; DPD: demographic parity difference; \\[low, high]: bootstrap "
        "interval. Δ: change against the base model, with a paired bootstrap interval.",
        highlight=False,
    )
    for variant in report["variants"]:
        if variant["status"] != "succeeded":
            console.print(f"[yellow]{variant['name']} failed:[/yellow] {escape(str(variant.get('error')))}", highlight=False)
    _print_warnings(report, console)


def _print_warnings(report: dict[str, Any], console: Console, shown: int = 5) -> None:
    """Print how many distinct warnings the variants carry, and the first few."""
    variants_by_warning: dict[str, list[str]] = {}
    for variant in report["variants"]:
        for warning in variant.get("warnings", []):
            variants_by_warning.setdefault(warning, []).append(variant["name"])
    if not variants_by_warning:
        return
    console.print(
        f"[yellow]{len(variants_by_warning)} warnings[/yellow] (small groups, undefined rates and others; all of "
        "them are in report.json and report.html):",
        highlight=False,
    )
    for warning, names in list(variants_by_warning.items())[:shown]:
        console.print(f"  {escape(warning)} ({escape(', '.join(names[:4]))}{', ...' if len(names) > 4 else ''})",
                      highlight=False, soft_wrap=True)


def _model_table(report: dict[str, Any]) -> Table:
    table = Table(title="Variants")
    for column in ("variant", "KiB", "gzip KiB", "params", "non-zero", "ms/batch", "accuracy", "Δ accuracy", "agree"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for variant in report["variants"]:
        if variant["status"] != "succeeded":
            table.add_row(variant["name"], "[red]failed[/red]", *["-"] * 7)
            continue
        artifact = variant["artifact"]
        change = variant.get("change_vs_base") or {}
        latency = variant.get("latency") or {}
        share = artifact["nonzero_parameters"] / artifact["parameters"] if artifact["parameters"] else 0.0
        table.add_row(
            variant["name"],
            f"{artifact['bytes'] / 1024:.1f}",
            f"{artifact['gzip_bytes'] / 1024:.1f}",
            f"{artifact['parameters']:,}",
            f"{share:.0%}",
            f"{latency['mean_ms']:.2f}" if latency else "-",
            f"{variant['metrics']['overall']['accuracy']:.4f}",
            _value(change.get("overall", {}).get("accuracy_change"), signed=True, interval=False) if change else "-",
            f"{variant['checks']['agreement_with_base']:.3f}",
        )
    return table


def _fairness_table(report: dict[str, Any]) -> Table:
    attributes = report["job"]["data"]["sensitive"]
    table = Table(title="Fairness by sensitive column")
    table.add_column("variant")
    for attribute in attributes:
        table.add_column(f"EOD {attribute}", justify="right")
        table.add_column(f"Δ EOD {attribute}", justify="right")
        table.add_column(f"DPD {attribute}", justify="right")
    for variant in report["variants"]:
        if variant["status"] != "succeeded":
            table.add_row(variant["name"], *["-"] * (3 * len(attributes)))
            continue
        row = [variant["name"]]
        for attribute in attributes:
            gaps = variant["metrics"]["gaps"].get(attribute, {})
            change = (variant.get("change_vs_base") or {}).get("gaps", {}).get(attribute, {})
            row.append(_value(gaps.get("equalized_odds_difference")))
            row.append(_value(change.get("equalized_odds_difference"), signed=True) if change else "-")
            row.append(_value(gaps.get("demographic_parity_difference"), interval=False))
        table.add_row(*row)
    return table


class _QuantizationAdviceFilter(logging.Filter):
    """Drop ONNX Runtime's advice to pre-process before quantizing; quantize_static already tries that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing")


def configure_logging(level: int = logging.WARNING) -> None:
    """Log warnings and errors to stderr, unless the caller configured logging already."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().addFilter(_QuantizationAdviceFilter())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fairsqueeze audit", description="Audit compression for fairness.")
    add_audit_arguments(parser)
    args = parser.parse_args(argv)
    return run_audit_command(args)


if __name__ == "__main__":
    sys.exit(main())
