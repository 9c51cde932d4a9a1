"""A converted ONNX classifier as torch trains it: the module, the output it reads, and its logits.

Every loss works on class logits. A model whose prediction output contains probabilities, or a single
score, is read through the logits that give the same prediction: log-probabilities for a softmax
output, and [0, s] (or [log(1 - p), log(p)]) for a single logit s (or probability p).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from workers.compression.base import CompressionContext, CompressionError

if TYPE_CHECKING:
    import onnx
    import torch

logger = logging.getLogger(__name__)

# Operators that mark a graph as quantized or half precision; such graphs cannot be trained in torch.
QUANTIZED_OPERATORS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QLinearMatMul",
        "QLinearConv",
        "DynamicQuantizeMatMul",
    }
)
# A module with fewer parameters than this trains faster on one thread, since thread synchronization
# costs more than the small matrix products save.
SINGLE_THREAD_PARAMETERS = 1_000_000
PROBABILITY_TOLERANCE = 1e-3
PROBE_ROWS = 256


@dataclass
class TrainableModel:
    """A torch module converted from ONNX, with the output index and kind that give class logits."""

    module: torch.nn.Module
    output_index: int
    kind: str  # "scores" (one value per class) or "single_score"
    probabilities: bool
    device: torch.device

    def logits(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Return class logits [batch, classes] for a batch of inputs (in model input order)."""
        import torch

        output = self.module(*inputs)
        if isinstance(output, (tuple, list)):
            output = output[self.output_index]
        if self.kind == "single_score":
            score = output.reshape(-1)
            if self.probabilities:
                probability = score.clamp(1e-7, 1.0 - 1e-7)
                return torch.stack([torch.log1p(-probability), torch.log(probability)], dim=1)
            return torch.stack([torch.zeros_like(score), score], dim=1)
        if self.probabilities:
            return torch.log(output.clamp_min(1e-12))
        return output

    def parameter_count(self) -> int:
        return sum(parameter.numel() for parameter in self.module.parameters())


def torch_device(context: CompressionContext) -> torch.device:
    """Return the torch device for `context.device`: CUDA when asked for and available, else the CPU."""
    import torch

    # NOTE: the tests run on the CPU only; the CUDA path (tensors and modules moved with .to(device))
    # has not run on a GPU.

    if context.device.startswith("cuda") and torch.cuda.is_available():
        return torch.device(context.device)
    return torch.device("cpu")


def check_trainable(model: onnx.ModelProto, method: str) -> None:
    """Raise CompressionError when `model` is quantized or half precision, which torch cannot train."""
    import onnx

    quantized = sorted({node.op_type for node in model.graph.node if node.op_type in QUANTIZED_OPERATORS})
    half = [tensor.name for tensor in model.graph.initializer if tensor.data_type == onnx.TensorProto.FLOAT16]
    if quantized or half:
        found = ", ".join(quantized) if quantized else f"float16 weights ({half[0]})"
        raise CompressionError(
            f"{method} trains the model in torch, but the model at this step is quantized or half precision "
            f"({found}); put {method} before the quantize_dynamic, quantize_static and fp16 steps"
        )


def to_trainable(model: onnx.ModelProto, context: CompressionContext, method: str) -> TrainableModel:
    """Convert `model` to torch on the context's device and find how to read its prediction output."""
    from workers.compression.convert import onnx_to_torch

    check_trainable(model, method)
    if context.training is None:
        raise CompressionError(f"{method} trains on data.training, but the job names no training table; add one")
    module = onnx_to_torch(model)
    device = torch_device(context)
    module.to(device)

    output_names = [output.name for output in model.graph.output]
    name = context.output_name if context.output_name in output_names else output_names[0]
    trainable = TrainableModel(module, output_names.index(name), "scores", False, device)
    sample = _probe(trainable, context)
    if not np.issubdtype(sample.dtype, np.floating):
        raise CompressionError(
            f"model output '{name}' contains class labels ({sample.dtype}), not scores, so {method} has no "
            "gradient to train on; export the model with its logits or probabilities as an output"
        )
    trainable.kind = "single_score" if sample.ndim == 1 or sample.shape[1] == 1 else "scores"
    trainable.probabilities = _reads_probabilities(sample, trainable.kind, context.output_kind)
    return trainable


def _probe(trainable: TrainableModel, context: CompressionContext) -> np.ndarray:
    import torch

    inputs = [
        torch.from_numpy(np.ascontiguousarray(array[:PROBE_ROWS])).to(trainable.device)
        for array in context.training.inputs.values()
    ]
    with torch.no_grad():
        output = trainable.module(*inputs)
    if isinstance(output, (tuple, list)):
        output = output[trainable.output_index]
    return output.detach().cpu().numpy()


def _reads_probabilities(sample: np.ndarray, kind: str, output_kind: str) -> bool:
    if output_kind in ("probabilities", "logits"):
        return output_kind == "probabilities"
    in_unit_range = bool(np.all((sample >= 0.0) & (sample <= 1.0)))
    if kind == "single_score":
        return in_unit_range
    sums_to_one = bool(np.allclose(sample.sum(axis=1), 1.0, atol=PROBABILITY_TOLERANCE))
    return in_unit_range and sums_to_one


@contextlib.contextmanager
def torch_threads(module: torch.nn.Module) -> Iterator[None]:
    """Set torch's intra-op threads for training `module`, and restore the previous count after."""
    import torch

    previous = torch.get_num_threads()
    parameters = sum(parameter.numel() for parameter in module.parameters())
    wanted = 1 if parameters < SINGLE_THREAD_PARAMETERS else max(1, os.cpu_count() or 1)
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class SparsityMasks:
    """The zero pattern of each Linear and convolution weight, kept through training.

    Pruned weights stay zero: the masks are applied after every optimizer step.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        from workers.compression.convert import weight_layers

        self.masks = []
        for _, layer in weight_layers(module):
            mask = layer.weight.detach() != 0
            if not bool(mask.all()):
                self.masks.append((layer, mask))

    def apply(self) -> None:
        import torch

        with torch.no_grad():
            for layer, mask in self.masks:
                layer.weight.mul_(mask)

    def zero_count(self) -> int:
        return sum(int((~mask).sum()) for _, mask in self.masks)
