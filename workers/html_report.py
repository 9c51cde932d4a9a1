"""A self-contained HTML page for one audit report: inline CSS, SVG and a little JavaScript.

The page loads nothing from the network. It shows a summary and the gate verdicts, when the job
has a gate. Two scatters plot model size against accuracy and against the equalized odds difference,
with interval bars and the Pareto front marked. Per-group metric bars cover the base and every
variant, and the page ends with the variant table and the warnings. Without JavaScript every chart
is shown. With it, two menus pick the attribute and the metric, and the script sets `data-plots`
and `data-plots-drawn` on the <html> element and `data-rect` on each plot for the screenshot test.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

from workers.gate import rate_interval
from workers.svg_charts import GroupBar, ScatterPoint, bar_panel_svg, scatter_svg

logger = logging.getLogger(__name__)

GROUP_METRICS = {
    "accuracy": "accuracy",
    "tpr": "true positive rate",
    "fpr": "false positive rate",
    "selection_rate": "selection rate",
}
STATUS_TEXT = {"passed": "pass", "failed": "fail", "undefined": "undefined", "skipped": "n/a", "error": "error"}


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def _interval(ci: list[float] | None, pattern: str = "{:.3f}") -> str:
    return "" if not ci else f" [{pattern.format(ci[0])}, {pattern.format(ci[1])}]"


def _succeeded(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [variant for variant in report["variants"] if variant["status"] == "succeeded"]


def _attributes(report: dict[str, Any]) -> list[str]:
    return list(report["data"]["groups"])


# Sections


def _summary_section(report: dict[str, Any]) -> str:
    job = report["job"]
    data = report["data"]
    variants = report["variants"]
    failed = [variant["name"] for variant in variants if variant["status"] != "succeeded"]
    base = variants[0]
    accuracy = (base.get("metrics") or {}).get("overall", {}).get("accuracy")
    gate = report.get("gate")

    facts = [
        ("model", job["model"]),
        ("evaluation rows", f"{data['evaluation_rows']:,}"),
        ("classes", ", ".join(data["classes"])),
        ("positive class", data.get("positive_class") or "- (multiclass)"),
        ("sensitive attributes", ", ".join(_attributes(report))),
        ("variants", f"{len(variants) - 1} compressed ({len(failed)} failed)" if failed else f"{len(variants) - 1}"),
        ("base accuracy", _number(accuracy, "{:.4f}")),
        (
            "bootstrap",
            f"{job['bootstrap']['resamples']} resamples, {job['bootstrap']['confidence']:.0%} intervals, "
            f"seed {job['bootstrap']['seed']}",
        ),
        ("created", f"{report['created_at']} in {report['duration_seconds']:.1f} s on {report['environment']['device']}"),
    ]
    if gate is not None:
        facts.append(("gate", gate["summary"]))
    rows = "".join(f"<tr><th>{_escape(name)}</th><td>{_escape(value)}</td></tr>" for name, value in facts)
    return f'<section id="summary"><h2>Summary</h2><table class="facts">{rows}</table></section>'


def _gate_section(report: dict[str, Any]) -> str:
    gate = report.get("gate")
    if gate is None:
        return ""
    verdict_class = "pass" if gate["passed"] else "fail"
    banner = f'<p class="banner {verdict_class}">{_escape(gate["summary"])}</p>'
    if gate.get("error"):
        return f'<section id="gate"><h2>Gate</h2>{banner}</section>'

    checks = gate["checks"]
    head = "".join(f"<th>{_escape(check['label'])}</th>" for check in checks)
    rows = []
    for verdict in gate["variants"]:
        marker = " ★" if verdict["name"] == gate["recommended"] else ""
        size = "-" if verdict["size"] is None else f"{verdict['size'] / 1024:.1f}"
        cells = "".join(_gate_cell(result) for result in verdict["results"])
        outcome = "pass" if verdict["passed"] else "fail"
        rows.append(
            f'<tr><td class="name">{_escape(verdict["name"])}{marker}</td><td class="num">{size}</td>'
            f'<td class="{outcome}">{outcome}</td>{cells}</tr>'
        )
    table = (
        '<table class="gate"><thead><tr><th>variant</th><th>KiB</th><th>verdict</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    decision = (
        "the worse end of each interval" if gate["decision"] == "bound" else "the point estimates"
    )
    note = (
        f"<p class=\"note\">Judged on {decision}. Cells show the judged number; hover for the reason. "
        "★ marks the recommended model, the smallest that passes.</p>"
    )
    return f'<section id="gate"><h2>Gate</h2>{banner}{table}{note}{_gate_failures(gate)}</section>'


def _gate_cell(result: dict[str, Any]) -> str:
    status = result["status"]
    text = STATUS_TEXT.get(status, status)
    if result.get("judged") is not None:
        text = f"{result['judged']:.4f} {text}"
    return f'<td class="{status}" title="{_escape(result["reason"])}">{_escape(text)}</td>'


def _gate_failures(gate: dict[str, Any]) -> str:
    items = []
    for verdict in gate["variants"]:
        for result in verdict["results"]:
            if result["status"] in ("failed", "undefined", "error"):
                items.append(
                    f"<li><b>{_escape(verdict['name'])}</b>, {_escape(result['label'])}: {_escape(result['reason'])}</li>"
                )
    if not items:
        return ""
    return f'<details open><summary>Reasons for failures ({len(items)})</summary><ul class="reasons">{"".join(items)}</ul></details>'


def _tradeoff_section(report: dict[str, Any]) -> str:
    gate = report.get("gate")
    passing = set(gate["passing"]) if gate else None
    recommended = gate["recommended"] if gate else None
    confidence = float(report["job"]["bootstrap"]["confidence"])
    intervals = int(report["job"]["bootstrap"]["resamples"]) > 0

    accuracy_points = []
    for variant in _succeeded(report):
        overall = variant["metrics"]["overall"]
        ci = rate_interval(overall, "accuracy", confidence) if intervals else None
        accuracy_points.append(_point(variant, overall.get("accuracy"), ci, passing, recommended))
    charts = [
        '<div class="chart">'
        + scatter_svg(
            accuracy_points,
            title="Model size against accuracy",
            y_label="accuracy (Wilson interval)" if intervals else "accuracy",
            higher_is_better=True,
        )
        + "</div>"
    ]
    for attribute in _attributes(report):
        points = []
        for variant in _succeeded(report):
            entry = variant["metrics"]["gaps"].get(attribute, {}).get("equalized_odds_difference") or {}
            points.append(_point(variant, entry.get("value"), entry.get("ci"), passing, recommended))
        svg = scatter_svg(
            points,
            title=f"Model size against equalized odds difference, {attribute}",
            y_label="equalized odds difference (bootstrap interval)",
            higher_is_better=False,
        )
        charts.append(f'<div class="chart" data-attribute="{_escape(attribute)}">{svg}</div>')
    legend = (
        '<p class="note">Bars are intervals at the job\'s confidence. The dashed line joins the Pareto front: '
        "models that no other model beats on both size and the metric (ringed)."
    )
    if gate:
        legend += " Green points pass the gate, red points fail it; ★ is the recommended model."
    return f'<section id="tradeoff"><h2>Size and fairness trade-off</h2>{legend}</p><div class="charts">{"".join(charts)}</div></section>'


def _point(
    variant: dict[str, Any],
    value: float | None,
    ci: list[float] | None,
    passing: set[str] | None,
    recommended: str | None,
) -> ScatterPoint:
    return ScatterPoint(
        name=variant["name"],
        x=variant["artifact"]["bytes"] / 1024,
        y=value,
        ci=ci,
        passed=None if passing is None else variant["name"] in passing,
        recommended=variant["name"] == recommended,
    )


def _groups_section(report: dict[str, Any]) -> str:
    variants = _succeeded(report)
    base = report["variants"][0]
    blocks = []
    for attribute in _attributes(report):
        for metric, label in GROUP_METRICS.items():
            base_groups = base["metrics"]["by_group"].get(attribute, {})
            if not any(metric in entry for entry in base_groups.values()):
                continue
            panels = []
            for variant in variants:
                groups = variant["metrics"]["by_group"].get(attribute, {})
                bars = [
                    GroupBar(
                        group=name,
                        value=entry.get(metric),
                        base=None if variant is base else (base_groups.get(name) or {}).get(metric),
                        small=bool(entry.get("small")),
                    )
                    for name, entry in groups.items()
                ]
                panels.append(f'<div class="panel">{bar_panel_svg(variant["name"], bars)}</div>')
            blocks.append(
                f'<div class="bars" data-attribute="{_escape(attribute)}" data-metric="{metric}">'
                f"<h3>{_escape(label)} by {_escape(attribute)}</h3><div class=\"panels\">{''.join(panels)}</div></div>"
            )
    note = (
        '<p class="note">One panel per model. In compressed variants the black tick marks the base model\'s '
        "value for the same group. Groups marked * have fewer rows than evaluation.min_group_size.</p>"
    )
    return f'<section id="groups"><h2>Per-group metrics</h2>{note}{"".join(blocks)}</section>'


def _variants_section(report: dict[str, Any]) -> str:
    head = (
        "<tr><th>variant</th><th>method</th><th>KiB</th><th>gzip KiB</th><th>params</th><th>non-zero</th>"
        "<th>accuracy</th><th>Δ accuracy (paired interval)</th><th>agreement</th><th>ms/batch</th></tr>"
    )
    rows = []
    for variant in report["variants"]:
        name = _escape(variant["name"])
        method = _escape(variant["method"])
        if variant["status"] != "succeeded":
            rows.append(f'<tr><td class="name">{name}</td><td>{method}</td><td class="error" colspan="8">failed</td></tr>')
            continue
        artifact = variant["artifact"]
        change = (variant.get("change_vs_base") or {}).get("overall", {}).get("accuracy_change")
        latency = variant.get("latency") or {}
        share = artifact["nonzero_parameters"] / artifact["parameters"] if artifact["parameters"] else 0.0
        change_text = "-" if not change else _number(change["value"], "{:+.4f}") + _interval(change["ci"], "{:+.4f}")
        cells = [
            f"{artifact['bytes'] / 1024:.1f}",
            f"{artifact['gzip_bytes'] / 1024:.1f}",
            f"{artifact['parameters']:,}",
            f"{share:.0%}",
            _number(variant["metrics"]["overall"].get("accuracy"), "{:.4f}"),
            change_text,
            f"{variant['checks']['agreement_with_base']:.3f}",
            _number(latency.get("mean_ms"), "{:.2f}"),
        ]
        numbers = "".join(f'<td class="num">{_escape(cell)}</td>' for cell in cells)
        rows.append(f'<tr><td class="name">{name}</td><td>{method}</td>{numbers}</tr>')
    table = f'<table class="variants"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    return f'<section id="variants"><h2>Variants</h2>{table}</section>'


def _warnings_section(report: dict[str, Any]) -> str:
    by_text: dict[str, list[str]] = {}
    for variant in report["variants"]:
        for warning in variant.get("warnings", []):
            by_text.setdefault(warning, []).append(variant["name"])
    items = [
        f"<li><b>{_escape(variant['name'])} failed:</b> {_escape(variant.get('error'))}</li>"
        for variant in report["variants"]
        if variant["status"] != "succeeded"
    ]
    gate = report.get("gate") or {}
    if gate.get("error"):
        items.append(f"<li><b>gate policy:</b> {_escape(gate['error'])}</li>")
    for text, names in by_text.items():
        items.append(f"<li>{_escape(text)} <span class=\"who\">({_escape(', '.join(names))})</span></li>")
    body = f'<ul class="warnings">{"".join(items)}</ul>' if items else "<p>No warnings.</p>"
    return f'<section id="warnings"><h2>Warnings</h2>{body}</section>'


def _controls(report: dict[str, Any]) -> str:
    attributes = "".join(
        f'<option value="{_escape(name)}">{_escape(name)}</option>' for name in _attributes(report)
    )
    metrics = "".join(f'<option value="{key}">{_escape(label)}</option>' for key, label in GROUP_METRICS.items())
    return (
        '<div class="controls" hidden><label>attribute <select id="attribute">'
        f'{attributes}</select></label> <label>group metric <select id="metric">{metrics}</select></label></div>'
    )


# Page


def render_html_report(report: dict[str, Any]) -> str:
    """Render the report as one HTML document that needs no other file and no network."""
    title = f"fairsqueeze audit: {Path(report['job']['model']).name}"
    sections = [
        _summary_section(report),
        _gate_section(report),
        _controls(report),
        _tradeoff_section(report),
        _groups_section(report),
        _variants_section(report),
        _warnings_section(report),
    ]
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
        f"<body><h1>{_escape(title)}</h1>{''.join(sections)}<script>{SCRIPT}</script></body></html>\n"
    )


def write_html_report(report: dict[str, Any], path: Path) -> None:
    """Write the HTML page to `path` through a temporary file, so readers never see half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(render_html_report(report), encoding="utf-8")
    temporary.replace(path)
    logger.info("wrote HTML report %s", path)


STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 24px;
       color: #1f2328; background: #ffffff; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 12px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 14px; margin: 16px 0 6px; }
table { border-collapse: collapse; } th, td { padding: 3px 8px; border-bottom: 1px solid #eaeef2; text-align: left; }
table.facts th { color: #57606a; font-weight: 600; padding-right: 16px; }
table.gate th { font-size: 12px; max-width: 180px; vertical-align: bottom; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } td.name { white-space: nowrap; font-weight: 600; }
td.passed, td.pass { background: #dafbe1; } td.failed, td.fail { background: #ffebe9; }
td.undefined { background: #fff8c5; } td.skipped { color: #8c959f; } td.error { background: #ffd8d3; }
.banner { padding: 8px 12px; border-radius: 6px; font-weight: 600; }
.banner.pass { background: #dafbe1; } .banner.fail { background: #ffebe9; }
.note { color: #57606a; font-size: 13px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(310px, 1fr)); gap: 8px; }
.panel { border: 1px solid #eaeef2; border-radius: 4px; padding: 4px; }
.controls { margin: 16px 0; padding: 8px; background: #f6f8fa; border-radius: 6px; }
.controls label { margin-right: 16px; }
ul.reasons li, ul.warnings li { margin: 2px 0; } .who { color: #57606a; }
svg text { font-family: inherit; }
"""

# Reads every plot's drawn box (so a test can tell drawn SVG from an empty one), then wires the menus.
SCRIPT = """
(function () {
  var root = document.documentElement;
  var plots = document.querySelectorAll("svg.plot");
  var drawn = 0;
  plots.forEach(function (svg) {
    var box = svg.getBBox();
    if (box.width > 0 && box.height > 0 && svg.querySelector(".mark")) { drawn += 1; }
  });
  root.setAttribute("data-plots", String(plots.length));
  root.setAttribute("data-plots-drawn", String(drawn));

  var attribute = document.getElementById("attribute");
  var metric = document.getElementById("metric");
  function show() {
    document.querySelectorAll("[data-attribute]").forEach(function (element) {
      var visible = element.getAttribute("data-attribute") === attribute.value;
      if (element.hasAttribute("data-metric")) {
        visible = visible && element.getAttribute("data-metric") === metric.value;
      }
      element.style.display = visible ? "" : "none";
    });
    plots.forEach(function (svg) {
      var rect = svg.getBoundingClientRect();
      svg.setAttribute("data-rect", [rect.left + window.scrollX, rect.top + window.scrollY, rect.width,
                                     rect.height].map(Math.round).join(","));
    });
  }
  if (attribute && metric) {
    document.querySelector(".controls").hidden = false;
    attribute.addEventListener("change", show);
    metric.addEventListener("change", show);
    show();
  }
})();
"""
