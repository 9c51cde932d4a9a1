"""Time the Adult demo: building the reference model, then the audit of the default recipe set.

Run from the repository root with the project's environment active:
    python benchmarks/demo_time.py [--runs 3]

Each run is a fresh process, as `scripts/demo.sh` starts them, so interpreter start-up and imports are
included. Peak memory is the largest resident set of the child processes.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="audit runs; the build runs once (default 3)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        build = Path(folder) / "build"
        build_seconds = timed([sys.executable, "examples/adult/build.py", "--out", str(build)])
        audit_seconds = [
            timed(
                [sys.executable, "-m", "service.cli", "audit", "--spec", str(build / "spec.yaml"),
                 "--out", str(Path(folder) / f"run-{index}"), "--quiet"]
            )
            for index in range(args.runs)
        ]

    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"build of the Adult model and tables: {build_seconds:.1f} s")
    print(f"audit of the default recipes: min {min(audit_seconds):.1f} s, max {max(audit_seconds):.1f} s "
          f"over {args.runs} runs")
    print(f"peak resident memory of one child process: {peak_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
