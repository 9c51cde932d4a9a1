"""Command-line entry point: `fairsqueeze audit`, `serve` and `worker`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("fairsqueeze: the command line is not installed yet")


if __name__ == "__main__":
    sys.exit(main())
