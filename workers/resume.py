"""Per-variant results kept beside an audit's output, so that an interrupted run can resume.

Each finished variant is written to `out_dir/.variants/<name>.json` under a key that hashes its
recipe and every spec setting its result depends on. A result whose key no longer matches, or whose
ONNX file is gone, is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from workers.report import write_json_atomic
from workers.spec import JobSpec, Recipe

logger = logging.getLogger(__name__)

PARTIAL_DIR = ".variants"


def recipe_key(recipe: Recipe | None, spec: JobSpec) -> str:
    payload = {
        "recipe": recipe.model_dump(mode="json") if recipe else "base",
        "data": spec.data.model_dump(mode="json"),
        "bootstrap": spec.bootstrap.model_dump(mode="json"),
        "evaluation": spec.evaluation.model_dump(mode="json"),
        "seed": spec.seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_partial(out_dir: Path, name: str, key: str) -> dict[str, Any] | None:
    path = out_dir / PARTIAL_DIR / f"{name}.json"
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        logger.warning("ignoring unreadable partial result %s", path)
        return None
    if stored.get("key") != key:
        return None
    artifact = stored["result"].get("artifact")
    if artifact and not (out_dir / artifact["path"]).is_file():
        return None
    return stored


def store_partial(out_dir: Path, name: str, key: str, result: dict[str, Any], predictions: np.ndarray | None) -> None:
    folder = out_dir / PARTIAL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if predictions is not None:
        np.save(folder / f"{name}.predictions.npy", predictions)
    write_json_atomic(folder / f"{name}.json", {"key": key, "result": result})


def load_predictions(out_dir: Path, name: str) -> np.ndarray | None:
    path = out_dir / PARTIAL_DIR / f"{name}.predictions.npy"
    return np.load(path, allow_pickle=False) if path.is_file() else None


def clean_partial_results(out_dir: Path) -> None:
    """Remove the per-variant files a finished run no longer needs."""
    folder = Path(out_dir) / PARTIAL_DIR
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file():
            path.unlink()
        else:
            os.rmdir(path)
    os.rmdir(folder)
