"""Run the intervention study on the Adult example and print the tables of benchmarks/README.md.

    python benchmarks/study_adult.py [--out runs/study-adult]

It builds the example if examples/adult/build/ is missing. Then it runs `fairsqueeze study` over the
default grid: prune90-ft, distill25 and lowrank25-ft, each with no intervention and with every
intervention before, during and after. Sex is the sensitive attribute, the evaluation table is
adult.test, the seed 0, and the bootstrap draws 1,000 resamples. It prints three Markdown sections: the distilled student
against the teacher, 90% pruning with fine-tuning with and without the fairness-aware variants
(paired intervals against the plain variant), and the whole grid.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.spec import load_spec_file  # noqa: E402
from workers.study import run_study  # noqa: E402

SPEC = ROOT / "examples" / "adult" / "build" / "spec.yaml"
ATTRIBUTE = "sex"
GAP = "equalized_odds_difference"
# Targets: a variant's gap is at most the base's plus GAP_MARGIN, and its accuracy is at most
# ACCURACY_MARGIN below the base's.
GAP_MARGIN = 0.01
ACCURACY_MARGIN = 0.015
PARAMETER_SHARE = 0.25


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "study-adult", help="output folder (default: runs/study-adult)")
    return parser.parse_args()


def interval(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    text = f"{entry['value']:+.4f}"
    if entry.get("ci"):
        text += f" [{entry['ci'][0]:+.4f}, {entry['ci'][1]:+.4f}]"
    return text


def student_section(rows: dict[str, dict[str, Any]]) -> list[str]:
    base, student = rows["base"], rows["distill25"]
    share = student["parameters"] / base["parameters"]
    drop = base["accuracy"] - student["accuracy"]
    meets = share <= PARAMETER_SHARE and drop <= ACCURACY_MARGIN
    return [
        "| model | parameters | accuracy | accuracy drop |",
        "|---|---|---|---|",
        f"| teacher (base) | {base['parameters']:,} | {base['accuracy']:.4f} | - |",
        f"| student (distill25) | {student['parameters']:,} ({share:.1%}) | {student['accuracy']:.4f} | "
        f"{drop * 100:.2f} points |",
        "",
        f"Target (at most {PARAMETER_SHARE:.0%} of the parameters, at most {ACCURACY_MARGIN * 100:.1f} points "
        f"below the teacher): {'met' if meets else 'not met'}.",
    ]


def pruning_section(rows: dict[str, dict[str, Any]]) -> list[str]:
    base = rows["base"]
    lines = [
        f"| variant | accuracy | drop vs base | EOD {ATTRIBUTE} | Δ accuracy vs plain | Δ EOD vs plain | target |",
        "|---|---|---|---|---|---|---|",
    ]
    names = ["prune90-ft"] + [
        f"prune90-ft.{method}.{placement}"
        for method in ("fair_pruning", "adversarial")
        for placement in ("before", "during", "after")
    ]
    for name in names:
        row = rows.get(name)
        if row is None or row["status"] != "succeeded":
            continue
        drop = base["accuracy"] - row["accuracy"]
        meets = row["gap"] <= base["gap"] + GAP_MARGIN and drop <= ACCURACY_MARGIN
        lines.append(
            f"| {name} | {row['accuracy']:.4f} | {drop * 100:.2f} points | {row['gap']:.4f} "
            f"[{row['gap_ci'][0]:.4f}, {row['gap_ci'][1]:.4f}] | {interval(row.get('accuracy_change'))} "
            f"| {interval(row.get('gap_change'))} | {'met' if meets else 'not met'} |"
        )
    lines += [
        "",
        f"Base: accuracy {base['accuracy']:.4f}, EOD {ATTRIBUTE} {base['gap']:.4f}. Target: EOD at most "
        f"{base['gap'] + GAP_MARGIN:.4f} (base + {GAP_MARGIN}) with an accuracy drop of at most "
        f"{ACCURACY_MARGIN * 100:.1f} points.",
    ]
    return lines


def main() -> int:
    args = parse_args()
    if not SPEC.is_file():
        subprocess.run([sys.executable, str(ROOT / "examples" / "adult" / "build.py")], check=True)
    spec = load_spec_file(SPEC)

    started = time.perf_counter()
    study = run_study(spec, out_dir=args.out, base_dir=SPEC.parent, attribute=ATTRIBUTE)
    seconds = time.perf_counter() - started
    rows = {row["variant"]: row for row in study["rows"]}

    sections = [
        "### Distilled student",
        "",
        *student_section(rows),
        "",
        "### 90% global pruning with fine-tuning",
        "",
        *pruning_section(rows),
        "",
        f"### The grid ({len(study['rows'])} variants, {seconds / 60:.1f} minutes)",
        "",
        (args.out / "study.md").read_text(encoding="utf-8").rstrip(),
    ]
    print("\n".join(sections))
    (args.out / "benchmark.json").write_text(json.dumps({"seconds": seconds}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
