"""Placeholder until the method lands; importing it registers the name only."""

from __future__ import annotations

from workers.compression.base import CompressionContext, CompressionError, Method, MethodConfig


class Config(MethodConfig):
    model_config = MethodConfig.model_config | {"extra": "allow"}


def apply(model, config: Config, context: CompressionContext):
    raise CompressionError("method 'quantize_dynamic' is not implemented yet")


METHOD = Method(name="quantize_dynamic", config_model=Config, apply=apply, needs_calibration=False)
