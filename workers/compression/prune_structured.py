"""Structured pruning: remove whole neurons and channels, so the model gets smaller and faster.

torch-pruning traces the layer dependencies of the converted model. From every hidden layer it
removes the `ratio` of output neurons (Linear) or output channels (convolution) with the smallest
L1 norm, and the matching inputs of the layers that read them. The layers that
produce the model's outputs keep all their outputs, and the model's input features are never
removed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from workers.compression.base import CompressionContext, CompressionError, Method, MethodConfig

if TYPE_CHECKING:
    import onnx
    import torch

logger = logging.getLogger(__name__)


class Config(MethodConfig):
    """Options of the prune_structured method."""

    ratio: float = Field(
        description="Share of the neurons or channels of each hidden layer to remove, between 0 and 1."
    )

    @field_validator("ratio")
    @classmethod
    def _open_unit_interval(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(
                f"ratio must be greater than 0 and less than 1, got {value}; "
                "0.5 removes half the neurons of each hidden layer"
            )
        return value


def apply(model: onnx.ModelProto, config: Config, context: CompressionContext) -> onnx.ModelProto:
    """Remove the `ratio` of neurons or channels with the smallest L1 norm from each hidden layer."""
    import torch
    import torch_pruning

    from workers.compression.convert import example_inputs, export_checked, onnx_to_torch, weight_layers

    module = onnx_to_torch(model)
    output_layers = _output_layers(module)
    hidden = [name for name, layer in weight_layers(module) if layer not in output_layers]
    if not hidden:
        raise CompressionError(
            "prune_structured found no hidden Linear or convolution layer: every weight layer produces "
            "a model output, whose neurons cannot be removed; try prune or low_rank"
        )

    before = _parameter_count(module)
    examples = example_inputs(model, seed=context.seed)
    try:
        pruner = torch_pruning.pruner.MetaPruner(
            module,
            examples,
            importance=torch_pruning.importance.MagnitudeImportance(p=1),
            pruning_ratio=config.ratio,
            ignored_layers=list(output_layers),
        )
        pruner.step()
        # A forward pass catches layers that torch-pruning could not resize to match their inputs.
        with torch.no_grad():
            module(*examples)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as error:
        raise CompressionError(
            f"torch-pruning failed to remove neurons from this model: {error}; "
            "try prune (unstructured) or low_rank"
        ) from error

    after = _parameter_count(module)
    if after >= before:
        raise CompressionError(
            f"prune_structured removed no parameters at ratio {config.ratio} "
            f"(hidden layers: {', '.join(hidden)}); raise the ratio, or try prune or low_rank"
        )
    context.log(f"prune_structured: parameters {before} -> {after} ({1 - after / before:.1%} fewer)")
    return export_checked(module, model, context.work_dir, "prune_structured")


def _output_layers(module: torch.fx.GraphModule) -> set[torch.nn.Module]:
    """Find the Linear and convolution layers whose outputs reach a model output through no other
    weight layer; their output neurons are the model's outputs."""
    import torch

    kinds = (torch.nn.Linear, torch.nn.modules.conv._ConvNd)
    graph = getattr(module, "graph", None)
    if graph is None:
        raise CompressionError("prune_structured needs the torch.fx module that onnx2torch builds")

    found = set()
    pending = [node for node in graph.nodes if node.op == "output"]
    seen = set()
    while pending:
        node = pending.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module":
            layer = module.get_submodule(node.target)
            if isinstance(layer, kinds):
                found.add(layer)
                continue
        pending.extend(node.all_input_nodes)
    return found


def _parameter_count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


METHOD = Method(
    name="prune_structured",
    config_model=Config,
    apply=apply,
    summary="remove a share of the neurons or channels of each hidden layer (torch-pruning, L1 importance)",
)
