"""Bodies of /v1/datasets."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ColumnInfo(BaseModel):
    name: str
    dtype: str = Field(description="pandas or NumPy type name, for example int64, float64 or object.")
    shape: list[int] | None = Field(default=None, description="NPZ only: the array's shape after the row axis.")


class DatasetPublic(BaseModel):
    """An uploaded table."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "7c1e2d3f4a5b6c7d8e9f0a1b2c3d4e5f",
                    "sha256": "1f2e3d4c5b6a79880f1e2d3c4b5a69788f0e1d2c3b4a59687f0e1d2c3b4a5968",
                    "filename": "adult-eval.csv",
                    "format": "csv",
                    "bytes": 204800,
                    "rows": 4000,
                    "columns": [
                        {"name": "f0", "dtype": "float64"},
                        {"name": "sex", "dtype": "object"},
                        {"name": "label", "dtype": "int64"},
                    ],
                    "delimiter": ",",
                    "created_at": "2026-01-05T10:01:00Z",
                }
            ]
        },
    )

    id: str
    sha256: str
    filename: str
    format: Literal["csv", "parquet", "npz"]
    bytes: int
    rows: int
    columns: list[ColumnInfo]
    delimiter: str = Field(description="CSV field delimiter the table was read with.")
    created_at: datetime


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int = Field(description="Number of datasets in the store.")
