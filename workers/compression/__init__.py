"""Compression methods, one module each, looked up by their job-spec name.

Each method module defines a `MethodConfig` subclass and an `apply(model, config, context)`
function that returns a new ONNX model, and exports them as `METHOD`. Modules import torch and
the quantization tools inside `apply`, so looking a method up stays cheap.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

from workers.compression.base import CompressionContext, CompressionError, Method, MethodConfig

METHOD_MODULES = (
    "quantize_dynamic",
    "quantize_static",
    "fp16",
    "prune",
    "prune_structured",
    "low_rank",
    "finetune",
    "distill",
)

__all__ = ["CompressionContext", "CompressionError", "Method", "MethodConfig", "get_method", "method_names"]


@lru_cache(maxsize=1)
def _registry() -> dict[str, Method]:
    methods: dict[str, Method] = {}
    for module_name in METHOD_MODULES:
        module = importlib.import_module(f"workers.compression.{module_name}")
        method: Method = module.METHOD
        methods[method.name] = method
    return methods


def method_names() -> list[str]:
    return sorted(_registry())


def get_method(name: str) -> Method:
    """Return the method registered under `name`; raise KeyError listing the known names."""
    try:
        return _registry()[name]
    except KeyError:
        raise KeyError(f"unknown method '{name}'; known methods: {', '.join(method_names())}") from None
