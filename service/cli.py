"""Command-line entry point: `fairsqueeze audit`, `gate`, `study`, `serve`, `worker` and `openapi`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

WORKER_STOP_SECONDS = 30
WORKER_RESTART_DELAY_SECONDS = 2.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fairsqueeze", description="Audit how model compression changes per-group fairness."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    audit = commands.add_parser("audit", help="Run an audit on this machine and write the report and ONNX files.")
    _add_audit_arguments(audit)
    audit.set_defaults(handler=_run_audit)

    gate = commands.add_parser(
        "gate", help="Run an audit and judge it on a gate policy; exit 0 when a model passes, 1 when none does."
    )
    _add_gate_arguments(gate)
    gate.set_defaults(handler=_run_gate)

    study = commands.add_parser(
        "study", help="Audit every compression with each fairness intervention before, during and after it."
    )
    _add_study_arguments(study)
    study.set_defaults(handler=_run_study)

    serve = commands.add_parser("serve", help="Start the REST API, and by default one embedded worker.")
    serve.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    serve.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default 8000).")
    serve.add_argument("--no-worker", action="store_true", help="Start the API only; run `fairsqueeze worker` apart.")
    serve.add_argument("--data-dir", type=Path, help="Folder for the store and the files (sets FAIRSQUEEZE_DATA_DIR).")
    serve.add_argument(
        "--concurrency",
        type=int,
        help="Processes of the embedded worker (default: FAIRSQUEEZE_WORKER_CONCURRENCY, else the CPU count).",
    )
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="Start a Celery worker that runs audit jobs.")
    worker.add_argument(
        "--queues", help="Comma-separated queues to consume, from cpu and gpu (default: FAIRSQUEEZE_WORKER_QUEUES, cpu,gpu)."
    )
    worker.add_argument(
        "--concurrency", type=int, help="Worker processes (default: FAIRSQUEEZE_WORKER_CONCURRENCY, else the CPU count)."
    )
    worker.add_argument("--hostname", help="Celery node name (default: fairsqueeze-<pid>@<host>).")
    worker.add_argument("--data-dir", type=Path, help="Folder for the store and the files (sets FAIRSQUEEZE_DATA_DIR).")
    # Set by `serve` for its embedded worker, so the worker stops when `serve` is killed.
    worker.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    worker.set_defaults(handler=_worker)

    openapi = commands.add_parser("openapi", help="Write the OpenAPI document of the REST API.")
    openapi.add_argument("--out", type=Path, help="Output file (default: openapi/openapi.json in the source tree).")
    openapi.add_argument("--check", action="store_true", help="Exit with status 1 when the file is out of date.")
    openapi.set_defaults(handler=_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


# audit


def _add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    from workers.console import add_audit_arguments

    add_audit_arguments(parser)


def _run_audit(args: argparse.Namespace) -> int:
    from workers.console import run_audit_command

    return run_audit_command(args)


# gate


def _add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    from workers.gate_console import add_gate_arguments

    add_gate_arguments(parser)


def _run_gate(args: argparse.Namespace) -> int:
    from workers.gate_console import run_gate_command

    return run_gate_command(args)


# study


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    from workers.study import add_study_arguments

    add_study_arguments(parser)


def _run_study(args: argparse.Namespace) -> int:
    from workers.study import run_study_command

    return run_study_command(args)


# serve


def _apply_data_dir(data_dir: Path | None) -> None:
    """Export --data-dir so this process's settings and its child worker read the same folder."""
    if data_dir is not None:
        os.environ["FAIRSQUEEZE_DATA_DIR"] = str(data_dir.expanduser().resolve())
    from service.settings import get_settings

    get_settings.cache_clear()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.db import upgrade_database
    from service.logs import configure_logging
    from service.settings import get_settings

    _apply_data_dir(args.data_dir)
    settings = get_settings()
    configure_logging(settings.log_level)
    upgrade_database(settings.resolved_database_url)

    worker = None
    if not args.no_worker:
        worker = EmbeddedWorker(concurrency=args.concurrency)
        worker.start()
    # uvicorn shuts down on SIGINT or SIGTERM and then raises the signal again with the handler that
    # was installed before it started. This handler turns that into SystemExit, so `finally` runs.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_on_signal)
    try:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None)
    finally:
        if worker is not None:
            worker.stop()
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


class EmbeddedWorker:
    """Runs `fairsqueeze worker` as a child process and starts a new one whenever it exits."""

    def __init__(self, *, concurrency: int | None) -> None:
        self.command = [sys.executable, "-m", "service.cli", "worker", "--parent-pid", str(os.getpid())]
        if concurrency is not None:
            self.command += ["--concurrency", str(concurrency)]
        self.process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="embedded-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            # A session of its own keeps the terminal's Ctrl-C away from the worker (serve stops it), and
            # lets stop() kill the worker and its pool processes together when they do not exit.
            self.process = subprocess.Popen(self.command, start_new_session=True)
            logger.info("embedded worker started (pid %d)", self.process.pid)
            code = self.process.wait()
            if self._stopping.is_set():
                return
            logger.error(
                "embedded worker (pid %d) exited with code %s; starting a new one in %s s",
                self.process.pid,
                code,
                WORKER_RESTART_DELAY_SECONDS,
            )
            self._stopping.wait(WORKER_RESTART_DELAY_SECONDS)

    def stop(self) -> None:
        self._stopping.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        logger.info("stopping the embedded worker (pid %d)", process.pid)
        # SIGTERM goes to the worker's main process alone: Celery then stops its pool processes itself.
        # Pool processes signalled directly can die holding the pool's queue lock, and then the main
        # process hangs at exit waiting for that lock.
        process.terminate()
        try:
            process.wait(timeout=WORKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("embedded worker did not stop in %d s; killing it", WORKER_STOP_SECONDS)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# worker


def _worker(args: argparse.Namespace) -> int:
    from service.db import upgrade_database
    from service.settings import QUEUES, get_settings
    from service.storage import ArtifactStorage

    if args.parent_pid is not None:
        _exit_with_parent(args.parent_pid)
    _apply_data_dir(args.data_dir)
    settings = get_settings()
    upgrade_database(settings.resolved_database_url)
    ArtifactStorage(settings.resolved_data_dir).ensure_layout()

    from workers.celery_app import app

    queues = args.queues or ",".join(settings.queues)
    unknown = sorted(set(queues.split(",")) - set(QUEUES))
    if unknown:
        print(f"fairsqueeze worker: unknown queues {', '.join(unknown)}; use cpu, gpu or both", file=sys.stderr)
        return 2
    argv = [
        "worker",
        f"--loglevel={settings.log_level}",
        f"--queues={queues}",
        f"--hostname={args.hostname or f'fairsqueeze-{os.getpid()}@%h'}",
        # Gossip, mingle and event heartbeats need broadcast messages, which the SQLite broker lacks.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    concurrency = args.concurrency or settings.worker_concurrency
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv)
    return 0


def _exit_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM (a warm Celery shutdown) to this process when `parent` dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError) as error:
        logger.warning("the worker cannot follow its parent's exit on this system: %s", error)
        return
    # The parent may have died before prctl took effect.
    if os.getppid() != parent:
        raise SystemExit("fairsqueeze worker: the parent process exited before the worker started")


# openapi


def _openapi(args: argparse.Namespace) -> int:
    from service.openapi import DEFAULT_PATH, openapi_is_current, write_openapi

    path = args.out or DEFAULT_PATH
    if args.check:
        if openapi_is_current(path):
            print(f"{path} is up to date")
            return 0
        print(f"{path} is out of date; run `fairsqueeze openapi` and commit the result", file=sys.stderr)
        return 1
    write_openapi(path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
