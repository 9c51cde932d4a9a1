"""`fairsqueeze gate --server URL`: run the gate's audit on a fairsqueeze server.

The command uploads the model and tables that the local spec names, submits the job with its gate,
follows it with a progress bar, and downloads report.json and the ONNX files into `--out`. From
there it writes report.html, gate.json and junit.xml as a local run does. The API key comes
from FAIRSQUEEZE_API_KEY. This module imports neither torch nor the audit engine.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.client import (
    API_KEY_VARIABLE,
    ApiResponseError,
    ClientError,
    FairsqueezeClient,
    ServerUnreachable,
    WaitTimeout,
    download_results,
    upload_spec_inputs,
)
from service.schemas.audits import AuditPublic
from workers.console import prepare_output_folder
from workers.publish import publish_report
from workers.spec import JobSpec, SpecError

logger = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 1.0


def run_remote_audit(
    spec: JobSpec, base_dir: Path | None, args: argparse.Namespace, errors: Console
) -> dict[str, Any] | None:
    """Run the audit on `args.server` and write its files to `args.out`; return the report, or None
    after printing what went wrong."""
    server = args.server.rstrip("/")
    try:
        prepare_output_folder(args.out, overwrite=args.overwrite)
    except SpecError as error:
        _print_error(errors, str(error))
        return None

    try:
        with FairsqueezeClient.from_environment(server) as client:
            audit = _submit(client, spec, base_dir)
            errors.print(f"audit {audit.id} queued on {server}", highlight=False, soft_wrap=True)
            audit = _follow(client, audit, args, errors)
            if audit.status != "succeeded":
                _print_error(errors, _job_error(audit, server))
                return None
            report = download_results(client, audit.id, args.out)
    except WaitTimeout as error:
        _print_error(errors, f"{error}; {_cancel(server, error.audit.id)}")
        return None
    except ServerUnreachable as error:
        _print_error(errors, f"{error}. Check --server and that `fairsqueeze serve` runs there")
        return None
    except ApiResponseError as error:
        _print_error(errors, _rejection(error))
        return None
    except ClientError as error:
        _print_error(errors, str(error))
        return None

    # The server's report.json already contains the gate section. The HTML, gate.json and junit.xml
    # are written from it here, by the same code as a local run.
    publish_report(report, args.out)
    return report


def _submit(client: FairsqueezeClient, spec: JobSpec, base_dir: Path | None) -> AuditPublic:
    remote_spec = upload_spec_inputs(client, spec, base_dir=base_dir)
    return client.submit_audit(remote_spec)


def _follow(client: FairsqueezeClient, audit: AuditPublic, args: argparse.Namespace, errors: Console) -> AuditPublic:
    """Poll the job with a progress bar over its models until it ends or `args.timeout` passes."""
    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        disable=args.quiet,
        transient=True,
    )
    with progress:
        task = progress.add_task(audit.status, total=audit.progress.total)

        def on_update(current: AuditPublic) -> None:
            running = [variant.name for variant in current.variants if variant.status == "running"]
            description = running[0] if running else current.status
            done = current.progress.succeeded + current.progress.failed
            progress.update(task, description=description, completed=done, total=current.progress.total)

        return client.wait_for_audit(
            audit.id, timeout=args.timeout, poll_interval=POLL_INTERVAL_SECONDS, on_update=on_update
        )


def _job_error(audit: AuditPublic, server: str) -> str:
    if audit.status == "cancelled":
        return f"audit {audit.id} was cancelled on {server} before it ended"
    return f"audit {audit.id} failed on {server}: {audit.error or 'no error message'}"


def _rejection(error: ApiResponseError) -> str:
    if error.status_code == 401:
        return (
            f"the server rejected the request (401): {error.detail}. Set {API_KEY_VARIABLE} to a key that "
            "`fairsqueeze keys create` printed"
        )
    return f"the server rejected the request ({error.status_code}): {error.detail}"


def _cancel(server: str, audit_id: str) -> str:
    """Cancel a job the command stops waiting for, so it does not keep a worker busy; return the outcome as a clause."""
    try:
        with FairsqueezeClient.from_environment(server) as client:
            client.cancel_audit(audit_id)
    except ClientError as error:
        logger.warning("audit %s not cancelled after the timeout: %s", audit_id, error)
        return f"it could not be cancelled ({error}); cancel it with POST {server}/v1/audits/{audit_id}/cancel"
    return "the job was cancelled; raise --timeout to wait longer"


def _print_error(console: Console, message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
