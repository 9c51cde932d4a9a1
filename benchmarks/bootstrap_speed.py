"""Time the count-based bootstrap against fairlearn's MetricFrame bootstrap on the same rows.

Ours: `evaluate_predictions` (every per-group rate and every binary gap with an interval) and
`compare_predictions` (paired intervals of a variant against the base model), each with
`--resamples` resamples. fairlearn: `MetricFrame(n_boot=..., ci_quantiles=...)` computing
per-group tpr, fpr and selection rate, which is less work than ours because it has no gaps.

Run from the repository root:
    .venv/bin/python benchmarks/bootstrap_speed.py

fairlearn 0.15.0 took 542 s for n_boot=1000 on 50,000 rows on a 2-CPU x86_64 machine, so
`--fairlearn-resamples 20` gives a quicker estimate of its time per resample.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time

import numpy as np

from workers.fairness import BootstrapSettings, compare_predictions, evaluate_predictions


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="number of rows (default 50000)")
    parser.add_argument("--groups", type=int, default=4, help="number of groups of one attribute (default 4)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for ours (default 1000)")
    parser.add_argument(
        "--fairlearn-resamples",
        type=int,
        default=1000,
        help="n_boot for fairlearn's MetricFrame (default 1000); 0 skips fairlearn",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours; the fastest is reported")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and of both bootstraps")
    return parser.parse_args()


def synthetic_rows(rows: int, groups: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw labels, base predictions, variant predictions and group codes with group-dependent rates."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, groups, rows)
    base_rate = np.linspace(0.25, 0.55, groups)[codes]
    error_rate = np.linspace(0.10, 0.25, groups)[codes]
    y_true = (rng.random(rows) < base_rate).astype(np.int64)
    y_base = np.where(rng.random(rows) < error_rate, 1 - y_true, y_true)
    y_variant = np.where(rng.random(rows) < 0.05, 1 - y_base, y_base)
    return y_true, y_base, y_variant, codes


def fastest_seconds(function, repeats: int) -> float:
    """Run `function` once to warm up, then return the fastest of `repeats` timed runs."""
    function()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings)


def time_fairlearn(y_true, y_pred, codes, n_boot: int, seed: int) -> float:
    """Time one MetricFrame with n_boot resamples of per-group tpr, fpr and selection rate."""
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

    start = time.perf_counter()
    MetricFrame(
        metrics={"tpr": true_positive_rate, "fpr": false_positive_rate, "selection_rate": selection_rate},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=codes,
        n_boot=n_boot,
        ci_quantiles=[0.025, 0.975],
        random_state=seed,
    )
    return time.perf_counter() - start


def main() -> None:
    arguments = parse_arguments()
    y_true, y_base, y_variant, codes = synthetic_rows(arguments.rows, arguments.groups, arguments.seed)
    groups = {"group": (codes, [f"g{index}" for index in range(arguments.groups)])}
    settings = BootstrapSettings(resamples=arguments.resamples, seed=arguments.seed)
    binary = {"n_classes": 2, "class_names": ["negative", "positive"], "positive_class": 1}

    evaluate_seconds = fastest_seconds(
        lambda: evaluate_predictions(y_true, y_base, groups, bootstrap=settings, **binary), arguments.repeats
    )
    compare_seconds = fastest_seconds(
        lambda: compare_predictions(y_true, y_base, y_variant, groups, bootstrap=settings, **binary),
        arguments.repeats,
    )

    print("command:", shlex.join([os.path.relpath(sys.executable), *sys.argv]))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    print(f"rows={arguments.rows} groups={arguments.groups} binary")
    print(f"ours, evaluate_predictions, {arguments.resamples} resamples of all gaps: {evaluate_seconds:.3f} s")
    print(f"ours, compare_predictions, {arguments.resamples} paired resamples:       {compare_seconds:.3f} s")

    if arguments.fairlearn_resamples > 0:
        import fairlearn

        fairlearn_seconds = time_fairlearn(y_true, y_base, codes, arguments.fairlearn_resamples, arguments.seed)
        print(
            f"fairlearn {fairlearn.__version__} MetricFrame, n_boot={arguments.fairlearn_resamples}, "
            f"per-group tpr, fpr, selection_rate: {fairlearn_seconds:.3f} s"
        )


if __name__ == "__main__":
    main()
