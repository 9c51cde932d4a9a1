"""Audit reports for the gate tests, built with the engine's own metric functions on chosen predictions."""

from __future__ import annotations

from typing import Any

import numpy as np

from workers.fairness import BootstrapSettings, compare_predictions, evaluate_predictions

GROUP_NAMES = ["a", "b"]


def labelled_rows(rows: int = 2000, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return labels and group codes (0 = a, 1 = b) with about 30% positive labels."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.3).astype(np.int64)
    groups = rng.integers(0, 2, size=rows)
    return labels, groups


def flip(labels: np.ndarray, share: float, *, mask: np.ndarray | None = None, seed: int = 1) -> np.ndarray:
    """Return predictions equal to `labels` except for a random `share` of the rows in `mask`."""
    rng = np.random.default_rng(seed)
    candidates = np.ones(labels.shape[0], dtype=bool) if mask is None else mask
    wrong = candidates & (rng.random(labels.shape[0]) < share)
    return np.where(wrong, 1 - labels, labels)


def make_report(
    labels: np.ndarray,
    groups: np.ndarray,
    predictions: dict[str, np.ndarray],
    *,
    sizes: dict[str, int] | None = None,
    failed: tuple[str, ...] = (),
    resamples: int = 400,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Build a report dict whose variants are `predictions` in order; the first must be 'base'."""
    bootstrap = BootstrapSettings(resamples=resamples, confidence=confidence, seed=0)
    group_codes = {"sex": (groups, list(GROUP_NAMES))}
    common = {"n_classes": 2, "class_names": ["no", "yes"], "positive_class": 1, "bootstrap": bootstrap}
    base_predictions = predictions["base"]
    sizes = sizes or {}

    variants = []
    for index, (name, predicted) in enumerate(predictions.items()):
        variant: dict[str, Any] = {"name": name, "method": "none" if name == "base" else "test", "steps": []}
        if name in failed:
            variant.update(status="failed", error="conversion failed", warnings=[])
            variants.append(variant)
            continue
        size = sizes.get(name, 10_000 - 100 * index)
        variant.update(
            status="succeeded",
            artifact={"path": f"{name}.onnx", "bytes": size, "gzip_bytes": size // 2, "sha256": "0" * 64,
                      "parameters": 100, "nonzero_parameters": 100},
            checks={"onnx_checker": True, "runs": True,
                    "agreement_with_base": float(np.mean(predicted == base_predictions))},
            metrics=evaluate_predictions(labels, predicted, group_codes, **common),
            timings={"compress_seconds": 0.1, "evaluate_seconds": 0.2},
            warnings=[],
        )
        if name != "base":
            variant["change_vs_base"] = compare_predictions(labels, base_predictions, predicted, group_codes, **common)
        variants.append(variant)

    return {
        "schema_version": 1,
        "job": {"model": "model.onnx", "bootstrap": {"resamples": resamples, "confidence": confidence, "seed": 0}},
        "created_at": "2026-01-02T03:04:05+00:00",
        "data": {"groups": {"sex": {name: int(np.sum(groups == code)) for code, name in enumerate(GROUP_NAMES)}}},
        "variants": variants,
    }
