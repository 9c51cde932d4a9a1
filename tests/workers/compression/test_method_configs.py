"""Option validation of every method, directly and through the job spec's steps, and the registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from workers.compression import get_method, method_names
from workers.spec import Step

METHODS = ("quantize_dynamic", "quantize_static", "fp16", "prune", "prune_structured", "low_rank")

INVALID_OPTIONS = [
    (
        "prune",
        {"scope": "global", "sparsity": 1.5},
        "sparsity must be greater than 0 and less than 1, got 1.5",
    ),
    ("prune", {"scope": "local", "sparsity": 0}, "sparsity must be greater than 0 and less than 1, got 0"),
    ("prune", {"scope": "layer", "sparsity": 0.5}, "scope"),
    ("prune", {"scope": "global"}, "sparsity"),
    ("prune_structured", {"ratio": 1.0}, "ratio must be greater than 0 and less than 1, got 1.0"),
    ("low_rank", {"rank_ratio": 0.5, "energy": 0.9}, "give exactly one of rank_ratio and energy, got both"),
    ("low_rank", {}, "give exactly one of rank_ratio and energy, got neither"),
    ("low_rank", {"energy": 1.2}, "energy must be greater than 0 and at most 1, got 1.2"),
    ("low_rank", {"rank_ratio": -0.1}, "rank_ratio must be greater than 0 and less than 1, got -0.1"),
    ("quantize_static", {"calibration": "median"}, "calibration"),
    ("quantize_static", {"samples": 0}, "samples must be between 1 and 1000000, got 0"),
    ("quantize_dynamic", {"weight_type": "int4"}, "weight_type"),
]


def test_registry_lists_all_methods():
    assert set(METHODS) <= set(method_names())


@pytest.mark.parametrize(("method", "options", "expected"), INVALID_OPTIONS)
def test_invalid_options_rejected(method, options, expected):
    with pytest.raises(ValidationError) as raised:
        get_method(method).config_model.model_validate(options)

    assert expected in str(raised.value)


@pytest.mark.parametrize("method", METHODS)
def test_unknown_key_rejected(method):
    with pytest.raises(ValidationError) as raised:
        get_method(method).config_model.model_validate({"sparsityy": 0.5})

    assert "sparsityy" in str(raised.value)


def test_step_reports_invalid_sparsity():
    with pytest.raises(ValidationError) as raised:
        Step.model_validate({"method": "prune", "scope": "global", "sparsity": 1.5})

    assert "invalid options for method 'prune'" in str(raised.value)
    assert "got 1.5" in str(raised.value)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("quantize_dynamic", {}),
        ("quantize_static", {"calibration": "entropy", "samples": 128, "per_channel": True}),
        ("fp16", {}),
        ("prune", {"scope": "local", "sparsity": 0.9}),
        ("prune_structured", {"ratio": 0.5}),
        ("low_rank", {"energy": 0.95}),
    ],
)
def test_valid_step_options(method, options):
    config = Step.model_validate({"method": method, **options}).config()

    assert isinstance(config, get_method(method).config_model)
    for key, value in options.items():
        assert getattr(config, key) == value, key


def test_registry_import_stays_light():
    script = (
        "import sys\n"
        "from workers.compression import get_method, method_names\n"
        "[get_method(name) for name in method_names()]\n"
        "heavy = ('torch', 'onnx', 'onnxruntime', 'onnx2torch')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )

    repository = Path(__file__).resolve().parents[3]

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=repository
    )

    assert result.stdout.strip() == "[]"
