"""Bodies of /v1/audits. The request body is the job spec itself (`workers.spec.JobSpec`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.tables import AuditRecord, VariantRecord

AuditStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
VariantStatus = Literal["pending", "running", "succeeded", "failed"]

AUDIT_CREATE_EXAMPLE: dict[str, Any] = {
    "model": "3f2b8c1d9e7a4b6c8d0e1f2a3b4c5d6e",
    "data": {
        "evaluation": "7c1e2d3f4a5b6c7d8e9f0a1b2c3d4e5f",
        "training": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "label": "label",
        "positive_label": 1,
        "sensitive": ["sex"],
        "features": ["f0", "f1", "f2", "f3"],
    },
    "recipes": [
        {"name": "int8-dynamic", "steps": [{"method": "quantize_dynamic"}]},
        {"name": "fp16", "steps": [{"method": "fp16"}]},
    ],
    "bootstrap": {"resamples": 1000, "confidence": 0.95, "seed": 0},
}


class VariantPublic(BaseModel):
    """Progress of one variant; the base model is position 0."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    position: int
    method: str = Field(description="Compression methods of the recipe joined by '+'; 'none' for the base model.")
    status: VariantStatus
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    error: str | None


class AuditProgress(BaseModel):
    total: int = Field(description="Variants in the job, the base model included.")
    pending: int
    running: int
    succeeded: int
    failed: int


class AuditPublic(BaseModel):
    """An audit job: its status, progress per variant, timestamps and error."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5d4c3b2a19087f6e5d4c3b2a19087f6e",
                    "status": "running",
                    "queue": "cpu",
                    "trains": False,
                    "model_id": "3f2b8c1d9e7a4b6c8d0e1f2a3b4c5d6e",
                    "evaluation_dataset_id": "7c1e2d3f4a5b6c7d8e9f0a1b2c3d4e5f",
                    "training_dataset_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                    "spec": AUDIT_CREATE_EXAMPLE,
                    "created_at": "2026-01-05T10:02:00Z",
                    "started_at": "2026-01-05T10:02:01Z",
                    "finished_at": None,
                    "duration_seconds": None,
                    "attempts": 1,
                    "worker": "celery@worker-1",
                    "device": "cpu",
                    "error": None,
                    "progress": {"total": 3, "pending": 1, "running": 1, "succeeded": 1, "failed": 0},
                    "variants": [
                        {
                            "name": "base",
                            "position": 0,
                            "method": "none",
                            "status": "succeeded",
                            "started_at": "2026-01-05T10:02:01Z",
                            "finished_at": "2026-01-05T10:02:03Z",
                            "duration_seconds": 2.0,
                            "error": None,
                        },
                        {
                            "name": "int8-dynamic",
                            "position": 1,
                            "method": "quantize_dynamic",
                            "status": "running",
                            "started_at": "2026-01-05T10:02:03Z",
                            "finished_at": None,
                            "duration_seconds": None,
                            "error": None,
                        },
                        {
                            "name": "fp16",
                            "position": 2,
                            "method": "fp16",
                            "status": "pending",
                            "started_at": None,
                            "finished_at": None,
                            "duration_seconds": None,
                            "error": None,
                        },
                    ],
                }
            ]
        }
    )

    id: str
    status: AuditStatus
    queue: Literal["cpu", "gpu"] = Field(description="Celery queue: 'gpu' when a recipe trains, else 'cpu'.")
    trains: bool = Field(description="Whether any recipe uses a method that trains a network.")
    model_id: str
    evaluation_dataset_id: str
    training_dataset_id: str | None
    spec: dict[str, Any] = Field(description="The job spec as submitted, with model and dataset ids.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    attempts: int = Field(description="Deliveries that started running the job; above 1 after a worker was lost.")
    worker: str | None = Field(description="Celery worker that ran the job last.")
    device: str | None = Field(description="Device the engine used: cpu or cuda.")
    error: str | None
    progress: AuditProgress
    variants: list[VariantPublic]

    @classmethod
    def from_record(cls, audit: AuditRecord) -> AuditPublic:
        variants = [VariantPublic.model_validate(variant) for variant in audit.variants]
        return cls(
            id=audit.id,
            status=audit.status,
            queue=audit.queue,
            trains=audit.trains,
            model_id=audit.model_id,
            evaluation_dataset_id=audit.evaluation_dataset_id,
            training_dataset_id=audit.training_dataset_id,
            spec=audit.spec,
            created_at=audit.created_at,
            started_at=audit.started_at,
            finished_at=audit.finished_at,
            duration_seconds=audit.duration_seconds,
            attempts=audit.attempts,
            worker=audit.worker,
            device=audit.device,
            error=audit.error,
            progress=_progress(audit.variants),
            variants=variants,
        )


def _progress(variants: list[VariantRecord]) -> AuditProgress:
    counts = {status: 0 for status in ("pending", "running", "succeeded", "failed")}
    for variant in variants:
        counts[variant.status] = counts.get(variant.status, 0) + 1
    return AuditProgress(total=len(variants), **counts)


class AuditsPublic(BaseModel):
    data: list[AuditPublic]
    count: int = Field(description="Jobs matching the filter, over all pages.")
