"""Static quantization: int8 weights and uint8 activations in QDQ format, calibrated on training rows.

The activation ranges come from running the model on up to `samples` rows of the training split
(never the evaluation table), sampled with the job's seed. ONNX Runtime's pre-processing (shape
inference and graph optimization) runs first where it succeeds.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, field_validator

from workers.compression.base import CompressionContext, CompressionError, Method, MethodConfig

if TYPE_CHECKING:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader

logger = logging.getLogger(__name__)

CALIBRATION_BATCH_SIZE = 64
MAX_SAMPLES = 1_000_000


class Config(MethodConfig):
    """Options of the quantize_static method."""

    calibration: Literal["minmax", "entropy", "percentile"] = Field(
        default="minmax", description="How activation ranges are chosen from the calibration rows."
    )
    samples: int = Field(
        default=512, description="Training rows used for calibration, sampled without replacement."
    )
    per_channel: bool = Field(
        default=False, description="One weight scale per output channel instead of one per tensor."
    )

    @field_validator("samples")
    @classmethod
    def _valid_samples(cls, value: int) -> int:
        if not 1 <= value <= MAX_SAMPLES:
            raise ValueError(f"samples must be between 1 and {MAX_SAMPLES}, got {value}")
        return value


def apply(model: onnx.ModelProto, config: Config, context: CompressionContext) -> onnx.ModelProto:
    """Quantize `model` to QDQ int8 with activation ranges calibrated on training rows."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from workers.compression.verify import check_compressed_model

    if context.calibration is None:
        raise CompressionError(
            "quantize_static needs data.training for calibration; add a training table to the job spec, "
            "or use quantize_dynamic, which needs no data"
        )
    rows = _sample_rows(model, context.calibration, config.samples, context.seed)
    reader = _make_reader(_split_batches(model, rows))
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[config.calibration]

    context.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=context.work_dir, prefix="quantize_static-") as folder:
        source = _preprocess(model, Path(folder))
        target = Path(folder) / "quantized.onnx"
        # The entropy and percentile calibrators print their progress, which would mix into the CLI's output.
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                quantize_static(
                    source,
                    target,
                    reader,
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=config.per_channel,
                    calibrate_method=method,
                )
        except Exception as error:
            # Calibration runs the model in ONNX Runtime, and the quantizer raises assorted types.
            raise CompressionError(
                f"onnxruntime quantize_static ({config.calibration}) failed: {error}"
            ) from error
        finally:
            if printed.getvalue():
                logger.debug("onnxruntime calibration output: %s", printed.getvalue().strip())
        quantized = onnx.load(target)

    if _count_dequantize_nodes(quantized) <= _count_dequantize_nodes(model):
        raise CompressionError("quantize_static found no operator to quantize in this model; try fp16")
    check_compressed_model(quantized, model, "quantize_static")
    sample_count = next(iter(rows.values())).shape[0]
    context.log(f"quantize_static: calibrated ({config.calibration}) on {sample_count} training rows")
    return quantized


def _count_dequantize_nodes(model: onnx.ModelProto) -> int:
    return sum(node.op_type == "DequantizeLinear" for node in model.graph.node)


def _sample_rows(
    model: onnx.ModelProto, calibration: dict[str, np.ndarray], samples: int, seed: int
) -> dict[str, np.ndarray]:
    """Pick up to `samples` rows, the same rows for every input, cast to each input's dtype."""
    import onnx

    from workers.compression.verify import input_names

    names = input_names(model)
    missing = [name for name in names if name not in calibration]
    if missing:
        raise CompressionError(
            f"calibration data has no rows for model input(s) {', '.join(missing)}; "
            f"it has {', '.join(sorted(calibration)) or 'nothing'}"
        )
    counts = {name: len(calibration[name]) for name in names}
    if len(set(counts.values())) != 1:
        raise CompressionError(
            f"calibration inputs have different row counts: {counts}; give every input the same rows"
        )
    available = counts[names[0]]
    if available == 0:
        raise CompressionError("calibration data has no rows; the training table is empty")

    generator = np.random.default_rng(seed)
    chosen = np.sort(generator.choice(available, size=min(samples, available), replace=False))
    dtypes = {value.name: value.type.tensor_type.elem_type for value in model.graph.input}
    return {
        name: np.asarray(calibration[name])[chosen].astype(onnx.helper.tensor_dtype_to_np_dtype(dtypes[name]))
        for name in names
    }


def _split_batches(model: onnx.ModelProto, rows: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Split the rows into batches of 64, or of the model's fixed batch size, dropping a short last
    batch that a fixed batch size cannot take."""
    count = next(iter(rows.values())).shape[0]
    fixed = _fixed_batch_size(model)
    size = fixed or CALIBRATION_BATCH_SIZE
    stop = count - size + 1 if fixed else count
    batches = [
        {name: array[start : start + size] for name, array in rows.items()} for start in range(0, stop, size)
    ]
    if not batches:
        raise CompressionError(
            f"the model takes batches of exactly {size} rows but calibration has only {count}; "
            "raise samples or use a larger training table"
        )
    return batches


def _fixed_batch_size(model: onnx.ModelProto) -> int | None:
    from workers.compression.verify import input_names

    names = set(input_names(model))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name in names and dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return dims[0].dim_value
    return None


def _make_reader(batches: list[dict[str, np.ndarray]]) -> CalibrationDataReader:
    from onnxruntime.quantization import CalibrationDataReader

    class BatchReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    return BatchReader()


def _preprocess(model: onnx.ModelProto, folder: Path) -> Path:
    """Write `model` to `folder`, pre-processed for quantization where ONNX Runtime manages it."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = folder / "input.onnx"
    onnx.save(model, source)
    processed = folder / "preprocessed.onnx"
    try:
        quant_pre_process(str(source), str(processed))
    except Exception as error:
        # Pre-processing only helps quantization, so a failure (symbolic shape inference fails on
        # some graphs) is logged and skipped.
        logger.warning("quantization pre-processing failed, quantizing the model as it is: %s", error)
        return source
    return processed


METHOD = Method(
    name="quantize_static",
    config_model=Config,
    apply=apply,
    needs_calibration=True,
    summary="int8 QDQ quantization calibrated on training rows (minmax, entropy or percentile)",
)
