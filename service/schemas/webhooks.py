"""Bodies of webhook deliveries: the POST a callback URL receives, and /v1/audits/{id}/deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.tables import DeliveryRecord

WebhookEvent = Literal["audit.succeeded", "audit.failed", "audit.cancelled"]
DeliveryStatus = Literal["pending", "succeeded", "failed"]


class GateSummary(BaseModel):
    """The gate verdict of a job whose spec has a gate section."""

    passed: bool = Field(description="Whether at least one model passes every rule.")
    recommended: str | None = Field(description="The smallest model that passes every rule, if any.")
    summary: str = Field(description="One line stating the verdict.")
    error: str | None = Field(default=None, description="Why the policy could not be applied, when it could not.")


class WebhookAudit(BaseModel):
    """The job as the webhook reports it."""

    id: str
    status: Literal["succeeded", "failed", "cancelled"]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    error: str | None
    variants_succeeded: int
    variants_failed: int
    report_url: str | None = Field(description="Path of the report on the API, relative to its base URL.")
    report_html_url: str | None = Field(description="Path of the HTML report on the API, relative to its base URL.")
    gate: GateSummary | None = Field(description="The gate verdict; null when the spec has no gate or no report.")


class WebhookPayload(BaseModel):
    """The JSON body POSTed to a job's callback_url. The body bytes are signed exactly as sent."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "event": "audit.succeeded",
                    "delivery_id": "8e1f0c2d3b4a59687f6e5d4c3b2a1908",
                    "sent_at": "2026-01-05T10:04:00Z",
                    "audit": {
                        "id": "5d4c3b2a19087f6e5d4c3b2a19087f6e",
                        "status": "succeeded",
                        "created_at": "2026-01-05T10:02:00Z",
                        "started_at": "2026-01-05T10:02:01Z",
                        "finished_at": "2026-01-05T10:03:58Z",
                        "duration_seconds": 117.0,
                        "error": None,
                        "variants_succeeded": 3,
                        "variants_failed": 0,
                        "report_url": "/v1/audits/5d4c3b2a19087f6e5d4c3b2a19087f6e/report",
                        "report_html_url": "/v1/audits/5d4c3b2a19087f6e5d4c3b2a19087f6e/report.html",
                        "gate": {
                            "passed": True,
                            "recommended": "int8-dynamic",
                            "summary": "int8-dynamic is the smallest model that passes every rule (2 of 3 pass)",
                            "error": None,
                        },
                    },
                }
            ]
        }
    )

    event: WebhookEvent
    delivery_id: str = Field(description="Same value as the X-Fairsqueeze-Delivery header; equal on every retry.")
    sent_at: datetime = Field(description="When this attempt was sent; reject old ones to stop replays.")
    audit: WebhookAudit


class DeliveryAttemptPublic(BaseModel):
    """One POST of a delivery."""

    model_config = ConfigDict(from_attributes=True)

    number: int = Field(description="1 for the first POST, 2 for the first retry, and so on.")
    started_at: datetime
    duration_seconds: float
    status_code: int | None = Field(description="HTTP status of the response; null when none came.")
    error: str | None = Field(description="Why the attempt failed; null when the receiver responded with 2xx.")


class DeliveryPublic(BaseModel):
    """One webhook event of a job and every POST made to deliver it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "8e1f0c2d3b4a59687f6e5d4c3b2a1908",
                    "event": "audit.succeeded",
                    "url": "https://ci.example.com/hooks/fairsqueeze",
                    "status": "succeeded",
                    "created_at": "2026-01-05T10:03:58Z",
                    "next_attempt_at": None,
                    "delivered_at": "2026-01-05T10:04:05Z",
                    "attempts": [
                        {
                            "number": 1,
                            "started_at": "2026-01-05T10:03:59Z",
                            "duration_seconds": 0.05,
                            "status_code": 503,
                            "error": "the receiver responded with 503",
                        },
                        {
                            "number": 2,
                            "started_at": "2026-01-05T10:04:05Z",
                            "duration_seconds": 0.04,
                            "status_code": 200,
                            "error": None,
                        },
                    ],
                }
            ]
        }
    )

    id: str
    event: WebhookEvent
    url: str
    status: DeliveryStatus = Field(
        description="pending until a POST succeeds (succeeded) or the retries run out or cannot help (failed)."
    )
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="When the next POST is due, while pending.")
    delivered_at: datetime | None
    attempts: list[DeliveryAttemptPublic]

    @classmethod
    def from_record(cls, delivery: DeliveryRecord) -> DeliveryPublic:
        return cls(
            id=delivery.id,
            event=delivery.event,
            url=delivery.url,
            status=delivery.status,
            created_at=delivery.created_at,
            next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
            delivered_at=delivery.delivered_at,
            attempts=[DeliveryAttemptPublic.model_validate(attempt) for attempt in delivery.attempt_log],
        )


class DeliveriesPublic(BaseModel):
    data: list[DeliveryPublic]
    count: int = Field(description="Deliveries of the job.")
