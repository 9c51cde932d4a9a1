"""Dynamic quantization: int8 weights, activations quantized at run time from their observed range.

onnxruntime.quantization.quantize_dynamic rewrites MatMul and Gemm into MatMulInteger and Conv into
ConvInteger. It needs no calibration data.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from workers.compression.base import CompressionContext, CompressionError, Method, MethodConfig

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

INTEGER_OPERATORS = frozenset({"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DequantizeLinear"})


class Config(MethodConfig):
    """Options of the quantize_dynamic method."""

    weight_type: Literal["int8", "uint8"] = Field(
        default="int8", description="Integer type of the quantized weights."
    )
    per_channel: bool = Field(
        default=False, description="One scale per output channel instead of one per tensor."
    )


def apply(model: onnx.ModelProto, config: Config, context: CompressionContext) -> onnx.ModelProto:
    """Quantize the weights of MatMul, Gemm and Conv to 8 bits with ONNX Runtime's dynamic quantization."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from workers.compression.verify import check_compressed_model

    weight_type = QuantType.QInt8 if config.weight_type == "int8" else QuantType.QUInt8
    context.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=context.work_dir, prefix="quantize_dynamic-") as folder:
        source = Path(folder) / "input.onnx"
        target = Path(folder) / "quantized.onnx"
        onnx.save(model, source)
        try:
            quantize_dynamic(source, target, weight_type=weight_type, per_channel=config.per_channel)
        except Exception as error:
            # The quantizer raises assorted types (ValueError, RuntimeError, onnx errors) for models
            # it cannot handle.
            raise CompressionError(f"onnxruntime quantize_dynamic failed: {error}") from error
        quantized = onnx.load(target)

    if _count_integer_nodes(quantized) <= _count_integer_nodes(model):
        raise CompressionError(
            "quantize_dynamic found no MatMul, Gemm or Conv with constant weights to quantize; "
            "try quantize_static or fp16"
        )

    try:
        check_compressed_model(quantized, model, "quantize_dynamic")
    except CompressionError as error:
        if any(node.op_type == "ConvInteger" for node in quantized.graph.node):
            raise CompressionError(
                "quantize_dynamic turned the convolutions into ConvInteger, which ONNX Runtime's CPU "
                f"provider cannot run for this model ({error}); use quantize_static for convolutional models"
            ) from error
        raise
    return quantized


def _count_integer_nodes(model: onnx.ModelProto) -> int:
    return sum(node.op_type in INTEGER_OPERATORS for node in model.graph.node)


METHOD = Method(
    name="quantize_dynamic",
    config_model=Config,
    apply=apply,
    summary="int8 weights with activations quantized at run time (ONNX Runtime dynamic quantization)",
)
