"""Start the API and Celery workers as real subprocesses for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagedProcess:
    """A child process in a session of its own, so a signal reaches it and its children together."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            # The main process alone: Celery stops its own pool processes.
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_group(signal.SIGKILL)
                self.process.wait(timeout=10)
        # Pool processes of a killed worker may outlive it; end the whole session.
        self.kill_group(signal.SIGKILL)
        self._log.close()

    def log_tail(self, characters: int = 4000) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-characters:]


def python_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", *arguments]


def service_env(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FAIRSQUEEZE_")}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.25, description: str) -> Any:
    """Poll `condition` until it returns a true value; fail naming `description` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {description}")
        time.sleep(interval)


def wait_until_ready(base_url: str, process: ManagedProcess, *, timeout: float = 60.0) -> None:
    def ready() -> bool:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited with code {process.process.returncode}:\n{process.log_tail()}")
        try:
            return httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=timeout, description=f"{process.name} at {base_url} to become ready")
