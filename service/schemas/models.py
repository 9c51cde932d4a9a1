"""Bodies of /v1/models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class TensorInfo(BaseModel):
    name: str
    dtype: str = Field(description="NumPy name of the element type, for example float32.")
    shape: list[int | str | None] | None = Field(
        description="Dimensions: a number, a symbolic name, or null when unknown; null when the rank is unknown."
    )


class ModelPublic(BaseModel):
    """An uploaded ONNX model."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2b8c1d9e7a4b6c8d0e1f2a3b4c5d6e",
                    "sha256": "9b1c6f0e2d5a4b3c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d",
                    "filename": "adult-mlp.onnx",
                    "bytes": 10452,
                    "opset": 17,
                    "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 12]}],
                    "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 2]}],
                    "parameters": 2498,
                    "created_at": "2026-01-05T10:00:00Z",
                }
            ]
        },
    )

    id: str
    sha256: str = Field(
        description="SHA-256 of the file; the same bytes uploaded with the same API key give the same model record."
    )
    filename: str
    bytes: int
    opset: int | None = Field(description="Version of the default ONNX operator set.")
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    parameters: int = Field(description="Number of weight values in the graph's initializers.")
    created_at: datetime


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int = Field(description="Number of models in the store.")
