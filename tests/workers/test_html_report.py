"""The HTML report: self-contained, escaped, and with plots that headless Chromium really draws."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.utils.models import export_mlp, make_table
from workers.html_report import render_html_report
from workers.pipeline import run_audit
from workers.spec import parse_spec
from workers.svg_charts import ScatterPoint, nice_ticks, pareto_front

WIDTH, HEIGHT = 1280, 2600
PASS_RGB = (0x1A, 0x7F, 0x37)
FAIL_RGB = (0xCF, 0x22, 0x2E)
BAR_RGB = (0x09, 0x69, 0xDA)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("html")
    export_mlp(folder / "model.onnx", n_features=4, seed=0)
    table = make_table(800, seed=1, groups=("a", "b", "x&y"))
    table["band"] = np.where(np.arange(len(table)) % 3 == 0, "young", "old")
    table.to_csv(folder / "eval.csv", index=False)
    spec = parse_spec(
        {
            "model": "model.onnx",
            "data": {"evaluation": "eval.csv", "label": "label", "sensitive": ["group", "band"]},
            "recipes": [
                {"name": "int8-dynamic", "steps": [{"method": "quantize_dynamic"}]},
                {"name": "half", "steps": [{"method": "fp16"}]},
                {"name": "prune-80", "steps": [{"method": "prune", "scope": "global", "sparsity": 0.8}]},
            ],
            "bootstrap": {"resamples": 200},
            "evaluation": {"latency_runs": 1},
            "gate": {
                "rules": [
                    # The untrained MLP is near chance; pruning 80% of it costs about 0.04 accuracy.
                    {"metric": "accuracy", "min": 0.4, "max_drop": 0.03},
                    {"metric": "equalized_odds_difference", "attribute": "group", "max": 0.5},
                ]
            },
        }
    )
    out = folder / "out"
    report = run_audit(spec, out_dir=out, base_dir=folder)
    return report, out


def test_audit_writes_html_beside_json(audit):
    _, out = audit

    assert (out / "report.html").is_file()
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_page_loads_nothing_external(audit):
    report, _ = audit
    page = render_html_report(report)
    # The SVG namespace is an identifier, not a fetched address.
    without_namespace = page.replace('xmlns="http://www.w3.org/2000/svg"', "")

    assert re.search(r"https?://", without_namespace) is None
    assert re.search(r"\b(src|href)\s*=", page) is None
    assert "<link" not in page
    assert "@import" not in page


def test_page_has_every_section(audit):
    report, _ = audit
    page = render_html_report(report)

    for section in ("summary", "gate", "tradeoff", "groups", "variants", "warnings"):
        assert f'<section id="{section}">' in page, section
    assert report["gate"]["summary"] in page


def test_group_names_are_escaped(audit):
    report, _ = audit
    page = render_html_report(report)

    assert ">x&amp;y<" in page
    assert "group&amp;band" in page
    assert ">x&y<" not in page


def test_warnings_list_dynamic_quantization(audit):
    report, _ = audit
    page = render_html_report(report)

    assert "activations are quantized with a scale computed per call" in page
    assert "(int8-dynamic)" in page


def test_pareto_front_skips_dominated():
    points = [
        ScatterPoint("big-good", 30.0, 0.90, None, None, False),
        ScatterPoint("small-good", 10.0, 0.89, None, None, False),
        ScatterPoint("small-bad", 12.0, 0.70, None, None, False),
        ScatterPoint("undefined", 5.0, None, None, None, False),
    ]

    front = pareto_front(points, higher_is_better=True)
    lower_front = pareto_front(points, higher_is_better=False)

    assert [point.name for point in front] == ["small-good", "big-good"]
    assert [point.name for point in lower_front] == ["small-good", "small-bad"]


def test_nice_ticks_cover_range():
    ticks = nice_ticks(0.781, 0.869)

    assert ticks[0] <= 0.781
    assert ticks[-1] >= 0.869
    assert 3 <= len(ticks) <= 8


def _chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed; scripts/test.sh installs it with apt-get on CI or as root")


def _run_chromium(binary: str, page: Path, profile: Path, *action: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
        "--force-device-scale-factor=1", f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
        *action, page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def rendered(audit, tmp_path_factory) -> tuple[str, Image.Image]:
    binary = _chromium()
    _, out = audit
    work = tmp_path_factory.mktemp("chromium")
    dom = _run_chromium(binary, out / "report.html", work / "profile-dom", "--dump-dom").stdout
    screenshot = work / "report.png"
    _run_chromium(binary, out / "report.html", work / "profile-shot", f"--screenshot={screenshot}")
    return dom, Image.open(screenshot).convert("RGB")


def _visible_plot_rects(dom: str) -> list[tuple[int, int, int, int]]:
    rects = []
    for match in re.finditer(r'<svg class="plot"[^>]*data-rect="(\d+),(\d+),(\d+),(\d+)"', dom):
        left, top, width, height = (int(value) for value in match.groups())
        if width > 0 and height > 0 and top + height <= HEIGHT:
            rects.append((left, top, width, height))
    return rects


def _pixels(image: Image.Image, rect: tuple[int, int, int, int]) -> np.ndarray:
    left, top, width, height = rect
    return np.asarray(image.crop((left, top, left + width, top + height))).reshape(-1, 3)


def _count_near(pixels: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.sum(np.abs(pixels.astype(int) - np.array(colour)).max(axis=1) <= 24))


def test_script_reports_all_plots_drawn(rendered):
    dom, _ = rendered
    total = int(re.search(r'data-plots="(\d+)"', dom).group(1))
    drawn = int(re.search(r'data-plots-drawn="(\d+)"', dom).group(1))

    # One accuracy scatter, one EOD scatter per attribute (3), and per attribute and metric one panel per model.
    assert total == 1 + 3 + 3 * 4 * 4
    assert drawn == total


def test_screenshot_plots_have_ink(rendered):
    dom, image = rendered
    rects = _visible_plot_rects(dom)

    assert len(rects) >= 6
    for rect in rects:
        pixels = _pixels(image, rect)
        ink = np.sum(pixels.min(axis=1) < 200)
        assert ink > 0.02 * len(pixels), rect


def test_screenshot_scatter_shows_verdict_colours(rendered):
    dom, image = rendered
    scatter = _visible_plot_rects(dom)[0]
    pixels = _pixels(image, scatter)

    assert scatter[2] == 600
    assert _count_near(pixels, PASS_RGB) > 30
    assert _count_near(pixels, FAIL_RGB) > 30


def test_screenshot_bar_panels_show_bars(rendered):
    dom, image = rendered
    panels = [rect for rect in _visible_plot_rects(dom) if rect[2] != 600]

    assert len(panels) == 4
    for rect in panels:
        assert _count_near(_pixels(image, rect), BAR_RGB) > 200, rect
