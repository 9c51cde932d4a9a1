"""The contract every compression method follows, and the registry that names them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import onnx

    from workers.data import PreparedData


class MethodConfig(BaseModel):
    """Base of every method's options: unknown keys are rejected so a typo is not ignored."""

    model_config = ConfigDict(extra="forbid")


class CompressionError(Exception):
    """A method cannot apply to this model. The message gives the reason and what to try instead."""


@dataclass
class CompressionContext:
    """What a method may use besides the model.

    `calibration` maps each model input name to rows from the training split (never the
    evaluation table). It is None when the job names no training table. `training` is the whole
    prepared training table (inputs, labels, groups), for the methods that train. `output_name`
    and `output_kind` say which model output holds the prediction and how to read it.
    `intervention` is the recipe's fairness intervention when its placement is "during", so that
    training and pruning steps apply it; None otherwise. `progress` receives one event per epoch.
    """

    work_dir: Path
    seed: int = 0
    device: str = "cpu"
    calibration: dict[str, np.ndarray] | None = None
    labels: np.ndarray | None = None
    log: Callable[[str], None] = field(default=lambda message: None)
    training: PreparedData | None = None
    output_name: str | None = None
    output_kind: str = "auto"
    intervention: Any | None = None
    progress: Callable[[dict[str, Any]], None] = field(default=lambda event: None)


ApplyFunction = Callable[["onnx.ModelProto", MethodConfig, CompressionContext], "onnx.ModelProto"]


@dataclass(frozen=True)
class Method:
    """One compression method: its spec name, its options model and its entry function."""

    name: str
    config_model: type[MethodConfig]
    apply: ApplyFunction
    needs_calibration: bool = False
    trains: bool = False
    summary: str = ""
