"""The `fairsqueeze gate` command: run the audit, judge it on a gate policy, set the exit code.

Exit codes: 0 when at least one model passes every rule, 1 when none does, 2 on an error (invalid
spec, policy, model or table, or an audit that failed), each with a message on stderr. The output
folder gets report.json, report.html, gate.json, junit.xml and the ONNX files.

With `--server URL` the audit runs on a fairsqueeze server: the command uploads the model and
tables, submits the job, follows it, downloads the report and the ONNX files, and judges and writes
its files as a local run does. An unreachable server, a rejected request and a timeout exit with 2.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workers.console import (
    add_audit_arguments,
    configure_logging,
    prepare_output_folder,
    print_summary,
    spec_from_arguments,
)
from workers.gate import GateError, check_policy
from workers.mlflow_logging import TRACKING_URI_VARIABLE, MlflowUnavailable, require_mlflow
from workers.spec import JobSpec, SpecError, load_gate_file

logger = logging.getLogger(__name__)

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_ERROR = 2
DEFAULT_SERVER_TIMEOUT_SECONDS = 3600.0
OUTPUT_FILES = ("report.json", "report.html", "gate.json", "junit.xml")
STATUS_MARKS = {"passed": "pass", "failed": "FAIL", "undefined": "UNDEFINED", "skipped": "n/a", "error": "ERROR"}


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the audit flags plus the gate's own: --policy, --decision and --mlflow-uri."""
    add_audit_arguments(parser)
    parser.add_argument(
        "--policy",
        type=Path,
        help="Gate policy YAML file with the keys of a job spec's gate section (decision, rules); "
        "replaces the spec's gate.",
    )
    parser.add_argument(
        "--decision",
        choices=("bound", "point"),
        help="Judge each rule on the interval's worse end (bound, the default) or on the point estimate.",
    )
    parser.add_argument(
        "--mlflow-uri",
        help=f"MLflow tracking URI to log the audit to (default: ${TRACKING_URI_VARIABLE}); "
        "needs the mlflow extra.",
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        help="Run the audit on the fairsqueeze server at URL (for example http://127.0.0.1:8000) instead of "
        "this machine; the API key is read from FAIRSQUEEZE_API_KEY.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_SERVER_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="With --server: seconds to wait for the job before cancelling it and exiting with 2 "
        f"(default {DEFAULT_SERVER_TIMEOUT_SECONDS:g}).",
    )


def gate_spec_from_arguments(args: argparse.Namespace) -> tuple[JobSpec, Path | None]:
    """Merge spec, flags and policy file; check the policy's names before anything runs."""
    spec, base_dir = spec_from_arguments(args)
    gate = load_gate_file(args.policy) if args.policy is not None else spec.gate
    if gate is None:
        raise SpecError(
            "no gate policy: add a gate section to the job spec or pass --policy FILE "
            "(a YAML file with decision and rules)"
        )
    if args.decision is not None:
        gate = gate.model_copy(update={"decision": args.decision})
    spec = spec.model_copy(update={"gate": gate})
    check_policy(spec)
    return spec, base_dir


def run_gate_command(args: argparse.Namespace) -> int:
    """Run the audit and the gate from parsed arguments; return the exit code."""
    configure_logging()
    errors = Console(stderr=True)
    try:
        spec, base_dir = gate_spec_from_arguments(args)
        _check_server_arguments(args)
        _configure_mlflow(args.mlflow_uri)
    except (SpecError, GateError, MlflowUnavailable) as error:
        _print_error(errors, str(error))
        return EXIT_ERROR

    if args.server:
        from workers.gate_remote import run_remote_audit

        report = run_remote_audit(spec, base_dir, args, errors)
    else:
        try:
            prepare_output_folder(args.out, overwrite=args.overwrite)
        except SpecError as error:
            _print_error(errors, str(error))
            return EXIT_ERROR
        report = _run_audit(spec, base_dir, args, errors)
    if report is None:
        return EXIT_ERROR
    gate = report.get("gate")
    if gate is None or gate.get("error"):
        _print_error(errors, gate["error"] if gate else "the report has no gate section")
        return EXIT_ERROR
    missing = [name for name in OUTPUT_FILES if not (args.out / name).is_file()]
    if missing:
        _print_error(errors, f"could not write {', '.join(missing)} in {args.out}; see the errors above")
        return EXIT_ERROR

    output = Console() if Console().is_terminal else Console(width=160)
    if not args.quiet:
        print_summary(report, output)
        print_verdicts(report, output)
    print_failures(report, output)
    verdict = "[green]PASSED[/green]" if gate["passed"] else "[red]FAILED[/red]"
    output.print(f"gate {verdict}: {escape(gate['summary'])}", highlight=False, soft_wrap=True)
    errors.print(f"wrote {', '.join(OUTPUT_FILES)} to {args.out}", highlight=False, soft_wrap=True)
    return EXIT_PASSED if gate["passed"] else EXIT_FAILED


def _check_server_arguments(args: argparse.Namespace) -> None:
    if args.server is None:
        return
    if args.device is not None:
        raise SpecError("--device applies to local runs only; with --server the server's worker picks its device")
    if not args.server.startswith(("http://", "https://")):
        raise SpecError(f"--server must be an http or https URL such as http://127.0.0.1:8000, got {args.server!r}")
    if not args.timeout > 0:
        raise SpecError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")


def _print_error(console: Console, message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def _configure_mlflow(uri: str | None) -> None:
    """Check that MLflow is importable and pass the URI to the audit's publishing step."""
    uri = uri or os.environ.get(TRACKING_URI_VARIABLE)
    if not uri:
        return
    require_mlflow()
    os.environ[TRACKING_URI_VARIABLE] = uri


def _run_audit(
    spec: JobSpec, base_dir: Path | None, args: argparse.Namespace, errors: Console
) -> dict[str, Any] | None:
    """Run the audit with a progress bar; return the report, or None after printing the error."""
    from workers.data import DataError
    from workers.onnx_model import ModelError
    from workers.pipeline import run_audit

    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        disable=args.quiet,
        transient=True,
    )
    try:
        with progress:
            task = progress.add_task("base", total=len(spec.resolved_recipes()) + 1)

            def on_progress(event: dict[str, Any]) -> None:
                if event["event"] == "variant_started":
                    progress.update(task, description=event["variant"])
                elif event["event"] == "variant_finished":
                    progress.advance(task)

            return run_audit(spec, out_dir=args.out, base_dir=base_dir, progress=on_progress, device=args.device)
    except (SpecError, DataError, ModelError, GateError) as error:
        _print_error(errors, str(error))
    except Exception as error:  # exit code 1 means "no model passes", so a crash must not produce it
        logger.error("the audit failed unexpectedly", exc_info=True)
        _print_error(errors, f"the audit failed unexpectedly: {type(error).__name__}: {error}")
    return None


def print_verdicts(report: dict[str, Any], console: Console) -> None:
    """Print one row per model and one column per check, with the number each check judged."""
    gate = report["gate"]
    table = Table(title=f"Gate verdicts (judged on the {'interval bound' if gate['decision'] == 'bound' else 'point estimate'})")
    table.add_column("variant")
    table.add_column("KiB", justify="right")
    table.add_column("verdict")
    for check in gate["checks"]:
        table.add_column(check["label"], justify="right", overflow="fold")
    for verdict in gate["variants"]:
        name = verdict["name"] + (" *" if verdict["name"] == gate["recommended"] else "")
        size = "-" if verdict["size"] is None else f"{verdict['size'] / 1024:.1f}"
        outcome = "[green]pass[/green]" if verdict["passed"] else "[red]FAIL[/red]"
        cells = [_cell(result) for result in verdict["results"]]
        table.add_row(escape(name), size, outcome, *cells)
    console.print(table)
    if gate["recommended"] is not None:
        console.print("* recommended: the smallest model that passes every rule", highlight=False)


def _cell(result: dict[str, Any]) -> str:
    mark = STATUS_MARKS.get(result["status"], result["status"])
    # Adding 0.0 turns a negative zero (a rounded tiny negative change) into "0.0000".
    text = mark if result.get("judged") is None else f"{round(result['judged'], 4) + 0.0:.4f} {mark}"
    if result["status"] in ("failed", "undefined", "error"):
        return f"[red]{escape(text)}[/red]"
    return escape(text)


def print_failures(report: dict[str, Any], console: Console) -> None:
    """Print each failed, undefined or errored check with its rule, the judged number and the limit."""
    for verdict in report["gate"]["variants"]:
        for result in verdict["results"]:
            if result["status"] in ("failed", "undefined", "error"):
                console.print(
                    f"[red]{escape(verdict['name'])}[/red] {escape(result['label'])}: {escape(result['reason'])}",
                    highlight=False,
                    soft_wrap=True,
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fairsqueeze gate", description="Audit, then judge on a gate policy.")
    add_gate_arguments(parser)
    return run_gate_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
