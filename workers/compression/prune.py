"""Unstructured magnitude pruning: zero the weights of smallest absolute value.

The model goes to torch through onnx2torch, torch.nn.utils.prune zeroes the weights of every
Linear and convolution layer (biases stay), and the result is exported back to ONNX. The zeros
shrink the model only after compression (gzip) or on a runtime with sparse kernels.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from workers.compression.base import CompressionContext, CompressionError, Method, MethodConfig

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

WEIGHT_OPERATORS = frozenset({"Gemm", "MatMul", "Conv", "ConvTranspose"})


class Config(MethodConfig):
    """Options of the prune method."""

    scope: Literal["local", "global"] = Field(
        default="global",
        description="local: prune each layer to the sparsity; global: rank all weights together, "
        "so layers end up with different sparsities.",
    )
    sparsity: float = Field(
        description="Share of the Linear and convolution weights set to zero, between 0 and 1."
    )

    @field_validator("sparsity")
    @classmethod
    def _open_unit_interval(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(
                f"sparsity must be greater than 0 and less than 1, got {value}; "
                "0.9 sets 90% of the weights to zero"
            )
        return value


def apply(model: onnx.ModelProto, config: Config, context: CompressionContext) -> onnx.ModelProto:
    """Set the `sparsity` share of the Linear and convolution weights with the smallest magnitude to zero."""
    from torch.nn.utils import prune as torch_prune

    from workers.compression.convert import export_checked, onnx_to_torch, weight_layers

    module = onnx_to_torch(model)
    layers = weight_layers(module)
    if not layers:
        raise CompressionError(
            "prune found no Linear (Gemm or MatMul with constant weights) or convolution layer to prune; "
            "try quantize_dynamic, quantize_static or fp16"
        )
    _log_dense_weights(model, len(layers), context)

    if config.scope == "local":
        for _, layer in layers:
            torch_prune.l1_unstructured(layer, name="weight", amount=config.sparsity)
    else:
        torch_prune.global_unstructured(
            [(layer, "weight") for _, layer in layers],
            pruning_method=torch_prune.L1Unstructured,
            amount=config.sparsity,
        )
    for _, layer in layers:
        torch_prune.remove(layer, "weight")

    total = sum(layer.weight.numel() for _, layer in layers)
    zeros = sum(int((layer.weight == 0).sum()) for _, layer in layers)
    context.log(
        f"prune ({config.scope}): {zeros} of {total} weights in {len(layers)} layers are zero "
        f"({zeros / total:.1%})"
    )
    return export_checked(module, model, context.work_dir, "prune")


def _log_dense_weights(model: onnx.ModelProto, layer_count: int, context: CompressionContext) -> None:
    """Report weight nodes that did not become a Linear or convolution layer in torch (a Gemm with
    a transposed input, a MatMul whose constant comes first), since they stay dense."""
    initializer_names = {tensor.name for tensor in model.graph.initializer if len(tensor.dims) >= 2}
    weight_nodes = [
        node
        for node in model.graph.node
        if node.op_type in WEIGHT_OPERATORS and initializer_names & set(node.input)
    ]
    if len(weight_nodes) > layer_count:
        message = (
            f"prune found {layer_count} prunable layers but the graph has {len(weight_nodes)} nodes "
            "with constant weights; the others stay dense"
        )
        logger.warning("%s", message)
        context.log(message)


METHOD = Method(
    name="prune",
    config_model=Config,
    apply=apply,
    summary="set the smallest-magnitude share of Linear and convolution weights to zero (local or global)",
)
