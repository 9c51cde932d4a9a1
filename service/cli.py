"""Command-line entry point: `fairsqueeze audit`, `gate`, `study`, `serve`, `worker`, `keys` and `openapi`."""

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

    serve = commands.add_parser(
        "serve",
        help="Start the REST API, and by default one embedded worker.",
        description="Start the REST API, and by default one embedded worker. API keys are optional unless "
        "--require-api-key or FAIRSQUEEZE_REQUIRE_API_KEY=true is set: a request without a key then gets 401. "
        "A request with a key sees only the models, datasets and jobs of that key, and one without a key only "
        "those created without a key. Create keys with `fairsqueeze keys create --name NAME`.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    serve.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default 8000).")
    serve.add_argument("--no-worker", action="store_true", help="Start the API only; run `fairsqueeze worker` apart.")
    serve.add_argument("--data-dir", type=Path, help="Folder for the store and the files (sets FAIRSQUEEZE_DATA_DIR).")
    serve.add_argument(
        "--concurrency",
        type=int,
        help="Processes of the embedded worker (default: FAIRSQUEEZE_WORKER_CONCURRENCY, else the CPU count).",
    )
    serve.add_argument(
        "--require-api-key",
        action="store_true",
        help="Reject requests without an API key (sets FAIRSQUEEZE_REQUIRE_API_KEY=true).",
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

    _add_keys_parser(commands)

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

    if args.require_api_key:
        os.environ["FAIRSQUEEZE_REQUIRE_API_KEY"] = "true"
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

    from workers.celery_app import WEBHOOK_QUEUE, app

    queues = args.queues or ",".join(settings.queues)
    unknown = sorted(set(queues.split(",")) - set(QUEUES))
    if unknown:
        print(f"fairsqueeze worker: unknown queues {', '.join(unknown)}; use cpu, gpu or both", file=sys.stderr)
        return 2
    argv = [
        "worker",
        f"--loglevel={settings.log_level}",
        # Every worker also sends webhook deliveries, which have a queue of their own.
        f"--queues={queues},{WEBHOOK_QUEUE}",
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


# keys


def _add_keys_parser(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser(
        "keys",
        help="Create, list and revoke API keys in the job store.",
        description="Manage the API keys of the REST API. The store keeps only a hash of each key, so a key is "
        "printed once, when it is created. Run it where the job store is reachable (the same "
        "FAIRSQUEEZE_DATABASE_URL or --data-dir as the API).",
    )
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="Create a key and print it with its webhook secret, once.")
    create.add_argument("--name", required=True, help="Who or what uses the key, for example ci-main.")
    create.set_defaults(handler=_keys_create)

    listing = actions.add_parser("list", help="List keys: id, name, prefix, creation and revocation time.")
    listing.set_defaults(handler=_keys_list)

    revoke = actions.add_parser("revoke", help="Revoke a key; requests with it get 401 from then on.")
    revoke.add_argument("key_id", metavar="ID", help="Id of the key, as `fairsqueeze keys list` prints it.")
    revoke.set_defaults(handler=_keys_revoke)

    for action in (create, listing, revoke):
        action.add_argument(
            "--data-dir", type=Path, help="Folder for the store and the files (sets FAIRSQUEEZE_DATA_DIR)."
        )


def _key_store_url(args: argparse.Namespace) -> str:
    from service.db import upgrade_database
    from service.settings import get_settings

    _apply_data_dir(args.data_dir)
    url = get_settings().resolved_database_url
    upgrade_database(url)
    return url


def _keys_create(args: argparse.Namespace) -> int:
    from service.auth import create_api_key

    try:
        created = create_api_key(_key_store_url(args), name=args.name)
    except ValueError as error:
        print(f"fairsqueeze keys create: {error}", file=sys.stderr)
        return 2
    record = created.record
    print(f"id:             {record.id}")
    print(f"name:           {record.name}")
    print(f"key:            {created.key}")
    print(f"webhook secret: {record.webhook_secret}")
    print(
        "Store the key now: it is not shown again. Send it as `Authorization: Bearer <key>` "
        "(the gate command reads FAIRSQUEEZE_API_KEY). The webhook secret verifies the signatures of this "
        "key's webhook deliveries.",
        file=sys.stderr,
    )
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from service import store
    from service.auth import KEY_PREFIX
    from service.db import session_scope

    with session_scope(_key_store_url(args)) as session:
        keys = store.list_api_keys(session)
    if not keys:
        print("no API keys; create one with `fairsqueeze keys create --name NAME`", file=sys.stderr)
        return 0
    rows = [("ID", "NAME", "KEY", "CREATED", "REVOKED")]
    for key in keys:
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-"
        created = key.created_at.isoformat(timespec="seconds")
        rows.append((key.id, key.name, f"{KEY_PREFIX}{key.prefix}_...", created, revoked))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip())
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from service import store
    from service.db import session_scope
    from service.tables import utcnow

    with session_scope(_key_store_url(args)) as session:
        key = store.get_api_key(session, key_id=args.key_id)
        revoked = key is not None and store.revoke_api_key(session, key_id=args.key_id, now=utcnow())
    if key is None:
        print(
            f"fairsqueeze keys revoke: no key with id {args.key_id!r}; `fairsqueeze keys list` prints the ids",
            file=sys.stderr,
        )
        return 2
    if not revoked:
        print(f"key {args.key_id} ({key.name}) was already revoked at {key.revoked_at.isoformat()}")
        return 0
    print(f"revoked key {args.key_id} ({key.name}); requests with it now get 401")
    return 0


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
