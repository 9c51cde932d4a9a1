"""The Adult example model and tables, built into a test folder by examples/adult/build.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "examples" / "adult" / "build.py"


def build_adult(out: Path) -> Path:
    """Run the build script into `out` and return it; the folder then holds spec.yaml and its files."""
    subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out
