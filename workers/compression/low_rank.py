"""Low-rank factorization: replace a weight matrix by the product of two thinner ones.

Each Linear layer with weight W (out x in) becomes Linear(in -> r) followed by Linear(r -> out),
built from the truncated SVD of W. A convolution with kernel K becomes a convolution with kernel
K and r output channels followed by a 1x1 convolution, from the SVD of the weight reshaped to
(out, in * prod(K)). A layer is left as it is when rank r would not save parameters.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field, field_validator, model_validator

from workers.compression.base import CompressionContext, CompressionError, Method, MethodConfig

if TYPE_CHECKING:
    import onnx
    import torch

logger = logging.getLogger(__name__)


class Config(MethodConfig):
    """Options of the low_rank method: exactly one of rank_ratio and energy."""

    rank_ratio: float | None = Field(
        default=None, description="Rank kept, as a share of each layer's full rank (between 0 and 1)."
    )
    energy: float | None = Field(
        default=None,
        description="Keep the smallest rank whose singular values hold this share of their squared sum "
        "(greater than 0, at most 1).",
    )

    @field_validator("rank_ratio")
    @classmethod
    def _valid_rank_ratio(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 < value < 1.0:
            raise ValueError(
                f"rank_ratio must be greater than 0 and less than 1, got {value}; 0.5 keeps half the rank"
            )
        return value

    @field_validator("energy")
    @classmethod
    def _valid_energy(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 < value <= 1.0:
            raise ValueError(
                f"energy must be greater than 0 and at most 1, got {value}; "
                "0.95 keeps 95% of the squared singular values"
            )
        return value

    @model_validator(mode="after")
    def _one_rank_rule(self) -> Config:
        if (self.rank_ratio is None) == (self.energy is None):
            received = "both" if self.rank_ratio is not None else "neither"
            raise ValueError(f"give exactly one of rank_ratio and energy, got {received}")
        return self


def apply(model: onnx.ModelProto, config: Config, context: CompressionContext) -> onnx.ModelProto:
    """Factorize every Linear and convolution layer where a truncated SVD saves parameters."""
    import torch

    from workers.compression.convert import export_checked, onnx_to_torch, weight_layers

    module = onnx_to_torch(model)
    factorized = 0
    saved = 0
    for name, layer in weight_layers(module):
        skip_reason = _unsupported_reason(layer)
        if skip_reason is not None:
            _log_skip(context, name, skip_reason)
            continue

        with torch.no_grad():
            replacement = _factorize(layer, config)
        if replacement is None:
            _log_skip(context, name, "a factorization at this rank would not save parameters")
            continue

        saved += _parameter_count(layer) - _parameter_count(replacement)
        _replace_submodule(module, name, replacement)
        factorized += 1

    if factorized == 0:
        rule = (
            f"rank_ratio {config.rank_ratio}" if config.rank_ratio is not None else f"energy {config.energy}"
        )
        raise CompressionError(
            f"low_rank factorized no layer: at {rule} no Linear or convolution layer saves parameters; "
            "lower rank_ratio or energy"
        )
    context.log(f"low_rank: factorized {factorized} layer(s), {saved} parameters fewer")
    return export_checked(module, model, context.work_dir, "low_rank")


def _unsupported_reason(layer: torch.nn.Module) -> str | None:
    import torch

    if isinstance(layer, torch.nn.modules.conv._ConvTransposeNd):
        return "transposed convolutions are not factorized"
    if isinstance(layer, torch.nn.modules.conv._ConvNd) and layer.groups != 1:
        return f"grouped convolutions (groups={layer.groups}) are not factorized"
    return None


def _factorize(layer: torch.nn.Module, config: Config) -> torch.nn.Module | None:
    """Build the two-layer replacement of `layer`, or return None when it would not save parameters."""
    import torch

    weight = layer.weight.detach().to(torch.float64)
    matrix = weight.reshape(weight.shape[0], -1)
    left, singular, right = torch.linalg.svd(matrix, full_matrices=False)
    rank = _choose_rank(singular.numpy(), config)
    if rank is None:
        return None
    outputs, inputs = matrix.shape
    if rank * (outputs + inputs) >= outputs * inputs:
        return None

    root = singular[:rank].sqrt()
    first = (root[:, None] * right[:rank]).to(layer.weight.dtype)
    second = (left[:, :rank] * root[None, :]).to(layer.weight.dtype)
    if isinstance(layer, torch.nn.Linear):
        return _linear_pair(layer, first, second)
    return _conv_pair(layer, first, second)


def _choose_rank(singular: np.ndarray, config: Config) -> int | None:
    full_rank = singular.size
    if config.rank_ratio is not None:
        return max(1, min(full_rank, round(config.rank_ratio * full_rank)))

    squared = singular.astype(np.float64) ** 2
    total = squared.sum()
    if total == 0.0:
        return None
    share = np.cumsum(squared) / total
    # Rounding can leave the last share just under 1.0, so the rank is capped at the full rank.
    return min(full_rank, int(np.searchsorted(share, config.energy)) + 1)


def _linear_pair(layer: torch.nn.Linear, first: torch.Tensor, second: torch.Tensor) -> torch.nn.Module:
    import torch

    rank = first.shape[0]
    reduce = torch.nn.Linear(layer.in_features, rank, bias=False)
    expand = torch.nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    reduce.weight.copy_(first)
    expand.weight.copy_(second)
    if layer.bias is not None:
        expand.bias.copy_(layer.bias)
    return torch.nn.Sequential(reduce, expand)


def _conv_pair(
    layer: torch.nn.modules.conv._ConvNd, first: torch.Tensor, second: torch.Tensor
) -> torch.nn.Module:
    import torch

    rank = first.shape[0]
    conv_type = type(layer)
    spatial = len(layer.kernel_size)
    reduce = conv_type(
        layer.in_channels,
        rank,
        kernel_size=layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        bias=False,
        padding_mode=layer.padding_mode,
    )
    expand = conv_type(rank, layer.out_channels, kernel_size=1, bias=layer.bias is not None)
    reduce.weight.copy_(first.reshape(rank, layer.in_channels, *layer.kernel_size))
    expand.weight.copy_(second.reshape(layer.out_channels, rank, *([1] * spatial)))
    if layer.bias is not None:
        expand.bias.copy_(layer.bias)
    return torch.nn.Sequential(reduce, expand)


def _replace_submodule(module: torch.nn.Module, name: str, replacement: torch.nn.Module) -> None:
    parent_name, _, child_name = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, child_name, replacement)


def _parameter_count(layer: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in layer.parameters())


def _log_skip(context: CompressionContext, name: str, reason: str) -> None:
    message = f"low_rank skipped layer {name}: {reason}"
    logger.info("%s", message)
    context.log(message)


METHOD = Method(
    name="low_rank",
    config_model=Config,
    apply=apply,
    summary="factorize Linear and convolution weights by truncated SVD (rank_ratio or energy)",
)
