"""Inline SVG charts for the HTML report: a size trade-off scatter and a per-group bar panel.

Both return an `<svg class="plot">` string whose drawn marks carry the class `mark`. Text widths
are estimated from the character count (about 6.5 px per character at 11 px), since the page is
not measured while the SVG is written.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

CHAR_WIDTH = 6.5
PASS_COLOR = "#1a7f37"
FAIL_COLOR = "#cf222e"
NEUTRAL_COLOR = "#0969da"
SMALL_GROUP_COLOR = "#9cc3f0"
GRID_COLOR = "#eaeef2"
AXIS_COLOR = "#57606a"


@dataclass(frozen=True)
class ScatterPoint:
    """One model in the trade-off scatter: size in KiB, the metric and its interval."""

    name: str
    x: float
    y: float | None
    ci: list[float] | None
    passed: bool | None
    recommended: bool


@dataclass(frozen=True)
class GroupBar:
    """One group's rate in a bar panel, with the base model's rate for the same group."""

    group: str
    value: float | None
    base: float | None
    small: bool


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Return round tick values covering [low, high], about `count` of them."""
    if high <= low:
        high = low + 1.0
    raw_step = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(multiple * magnitude for multiple in (1, 2, 2.5, 5, 10) if multiple * magnitude >= raw_step)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _format_tick(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    while decimals < 6 and abs(round(step, decimals) - step) > step * 1e-6:
        decimals += 1
    return f"{value:.{decimals}f}"


def pareto_front(points: list[ScatterPoint], *, higher_is_better: bool) -> list[ScatterPoint]:
    """Return the points no other point beats on both size (smaller) and the metric, by size."""
    sign = -1.0 if higher_is_better else 1.0
    ordered = sorted((point for point in points if point.y is not None), key=lambda p: (p.x, sign * p.y))
    front: list[ScatterPoint] = []
    best = math.inf
    for point in ordered:
        score = sign * point.y
        if score < best:
            front.append(point)
            best = score
    return front


def _point_color(point: ScatterPoint) -> str:
    if point.passed is None:
        return NEUTRAL_COLOR
    return PASS_COLOR if point.passed else FAIL_COLOR


class _Labels:
    """Places point labels beside their points so that no label covers another label or a point."""

    def __init__(self, left: float, top: float, right: float, bottom: float) -> None:
        self.bounds = (left, top, right, bottom)
        self.boxes: list[tuple[float, float, float, float]] = []

    def block_point(self, x: float, y: float, radius: float = 6.0) -> None:
        self.boxes.append((x - radius, y - radius, x + radius, y + radius))

    def place(self, x: float, y: float, text: str) -> tuple[float, float, bool]:
        """Return the label's start and baseline, and whether it was moved away from its point."""
        width = len(text) * CHAR_WIDTH
        left, top, right, bottom = self.bounds
        for shift in (0, 13, -13, 26, -26, 39, -39, 52, -52, 65, -65):
            for start in (x + 9, x - 9 - width):
                baseline = y + 4 + shift
                box = (start, baseline - 10, start + width, baseline + 3)
                inside = box[0] >= left and box[2] <= right and box[1] >= top and box[3] <= bottom
                if inside and not any(_overlap(box, other) for other in self.boxes):
                    self.boxes.append(box)
                    return start, baseline, shift != 0
        return x + 9, y + 4, False


def _overlap(first: tuple[float, ...], second: tuple[float, ...]) -> bool:
    return first[0] < second[2] and second[0] < first[2] and first[1] < second[3] and second[1] < first[3]


def scatter_svg(points: list[ScatterPoint], *, title: str, y_label: str, higher_is_better: bool) -> str:
    """Draw size (x, KiB) against a metric (y) with interval bars and the Pareto front."""
    width, height = 600, 380
    left, right, top, bottom = 64, 24, 40, 48
    drawn = [point for point in points if point.y is not None]
    missing = [point.name for point in points if point.y is None]
    if not drawn:
        return (
            f'<svg class="plot" width="{width}" height="60" role="img"><text x="8" y="20" font-weight="600">'
            f'{_escape(title)}</text><text x="8" y="44">no model has a defined value</text></svg>'
        )

    xs = [point.x for point in drawn]
    ys = [value for point in drawn for value in ([point.y] + list(point.ci or []))]
    x_ticks = nice_ticks(min(xs) * 0.9, max(xs) * 1.05)
    y_ticks = nice_ticks(min(ys), max(ys))
    x_low, x_high, y_low, y_high = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def sx(value: float) -> float:
        return left + (value - x_low) / (x_high - x_low) * (width - left - right)

    def sy(value: float) -> float:
        return height - bottom - (value - y_low) / (y_high - y_low) * (height - top - bottom)

    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_escape(title)}">',
        f'<text x="{left}" y="18" font-size="13" font-weight="600">{_escape(title)}</text>',
    ]
    parts += _axes(x_ticks, y_ticks, sx, sy, width=width, height=height, left=left, right=right, top=top, bottom=bottom)
    parts.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 8}" font-size="12" text-anchor="middle">model size (KiB)</text>'
    )
    parts.append(
        f'<text transform="translate(14 {(top + height - bottom) / 2}) rotate(-90)" font-size="12" '
        f'text-anchor="middle">{_escape(y_label)}</text>'
    )

    front = pareto_front(drawn, higher_is_better=higher_is_better)
    if len(front) > 1:
        path = " ".join(f"{sx(point.x):.1f},{sy(point.y):.1f}" for point in front)
        parts.append(f'<polyline class="mark front" points="{path}" fill="none" stroke="#8250df" stroke-width="1.5" stroke-dasharray="5 3"/>')
    parts += _scatter_marks(drawn, front, sx, sy, frame=(left, top, width - right, height - bottom))
    if missing:
        parts.append(
            f'<text x="{width - right}" y="32" font-size="11" text-anchor="end" fill="{AXIS_COLOR}">'
            f"undefined, not drawn: {_escape(', '.join(missing))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _axes(x_ticks, y_ticks, sx, sy, *, width, height, left, right, top, bottom) -> list[str]:
    parts = []
    x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    for tick in y_ticks:
        y = sy(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID_COLOR}"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="{AXIS_COLOR}">'
            f"{_format_tick(tick, y_step)}</text>"
        )
    for tick in x_ticks:
        x = sx(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="{GRID_COLOR}"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{height - bottom + 16}" font-size="11" text-anchor="middle" fill="{AXIS_COLOR}">'
            f"{_format_tick(tick, x_step)}</text>"
        )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        f'fill="none" stroke="{AXIS_COLOR}"/>'
    )
    return parts


def _scatter_marks(drawn, front, sx, sy, *, frame: tuple[float, float, float, float]) -> list[str]:
    parts = []
    on_front = {point.name for point in front}
    for point in drawn:
        if point.ci:
            x = sx(point.x)
            low, high = sy(point.ci[0]), sy(point.ci[1])
            color = _point_color(point)
            parts.append(
                f'<path class="mark interval" d="M{x:.1f},{low:.1f}V{high:.1f}M{x - 4:.1f},{low:.1f}H{x + 4:.1f}'
                f'M{x - 4:.1f},{high:.1f}H{x + 4:.1f}" stroke="{color}" stroke-opacity="0.6" fill="none"/>'
            )
    labels = _Labels(*frame)
    for point in drawn:
        labels.block_point(sx(point.x), sy(point.y))
    # The recommended model and the front points claim label space first.
    ordered = sorted(drawn, key=lambda point: (not point.recommended, point.name not in on_front, point.x))
    for point in ordered:
        x, y = sx(point.x), sy(point.y)
        color = _point_color(point)
        interval = "" if not point.ci else f" [{point.ci[0]:.4f}, {point.ci[1]:.4f}]"
        tooltip = f"{point.name}: {point.x:.1f} KiB, {point.y:.4f}{interval}"
        if point.name in on_front:
            parts.append(f'<circle class="mark ring" cx="{x:.1f}" cy="{y:.1f}" r="8" fill="none" stroke="#8250df" stroke-width="1.5"/>')
        parts.append(
            f'<circle class="mark point" cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{color}">'
            f"<title>{_escape(tooltip)}</title></circle>"
        )
        text = ("★ " if point.recommended else "") + point.name
        label_x, label_y, moved = labels.place(x, y, text)
        if moved:
            end_x = label_x - 2 if label_x > x else label_x + len(text) * CHAR_WIDTH + 2
            parts.append(
                f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{end_x:.1f}" y2="{label_y - 4:.1f}" stroke="#8c959f" stroke-width="0.75"/>'
            )
        weight = ' font-weight="700"' if point.recommended else ""
        parts.append(f'<text x="{label_x:.1f}" y="{label_y:.1f}" font-size="11"{weight}>{_escape(text)}</text>')
    return parts


def bar_panel_svg(title: str, bars: list[GroupBar]) -> str:
    """Draw one model's rate per group as horizontal bars on a fixed 0-1 scale."""
    longest = max((len(bar.group) + (2 if bar.small else 0) for bar in bars), default=4)
    label_width = min(longest * CHAR_WIDTH + 8, 170)
    bar_width, value_width, row = 150, 64, 17
    top, bottom = 22, 20
    width = int(label_width + bar_width + value_width)
    height = top + row * len(bars) + bottom
    max_chars = int((label_width - 8) / CHAR_WIDTH)

    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_escape(title)}">',
        f'<text x="2" y="14" font-size="12" font-weight="600">{_escape(title)}</text>',
    ]
    for tick in (0.0, 0.5, 1.0):
        x = label_width + tick * bar_width
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 2}" y2="{height - bottom + 2}" stroke="{GRID_COLOR}"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{height - 5}" font-size="10" text-anchor="middle" fill="{AXIS_COLOR}">{tick:g}</text>'
        )
    for index, bar in enumerate(bars):
        y = top + index * row
        name = bar.group + (" *" if bar.small else "")
        label = name if len(name) <= max_chars else name[: max_chars - 1] + "…"
        parts.append(
            f'<text x="{label_width - 6:.1f}" y="{y + 12}" font-size="11" text-anchor="end">'
            f"<title>{_escape(name)}</title>{_escape(label)}</text>"
        )
        if bar.value is None:
            parts.append(f'<text x="{label_width + 4:.1f}" y="{y + 12}" font-size="11" fill="{AXIS_COLOR}">undefined</text>')
            continue
        color = SMALL_GROUP_COLOR if bar.small else NEUTRAL_COLOR
        length = max(bar.value, 0.0) * bar_width
        parts.append(
            f'<rect class="mark bar" x="{label_width:.1f}" y="{y + 3}" width="{length:.1f}" height="{row - 6}" fill="{color}">'
            f"<title>{_escape(bar.group)}: {bar.value:.4f}</title></rect>"
        )
        if bar.base is not None:
            x = label_width + bar.base * bar_width
            parts.append(f'<line class="mark base" x1="{x:.1f}" x2="{x:.1f}" y1="{y + 1}" y2="{y + row - 1}" stroke="#1f2328" stroke-width="2"/>')
        parts.append(
            f'<text x="{label_width + bar_width + 6:.1f}" y="{y + 12}" font-size="11">{bar.value:.3f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
