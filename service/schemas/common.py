"""Bodies shared by every resource."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


# SQLite and PostgreSQL read OFFSET as a signed 64-bit integer, and larger values fail there.
# A store of this service has far fewer rows than this bound.
MAX_OFFSET = 1_000_000_000


class ErrorPublic(BaseModel):
    """An error response; `detail` names the field or resource that failed and the value."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"detail": "data.label: column 'income' not found; available: f0, f1, sex"}]}
    )

    detail: str = Field(description="What failed, on which field or value, and what to do.")


def error_responses(*codes: int) -> dict[int | str, dict]:
    """Return the `responses` entries documenting `codes` with the error body."""
    descriptions = {
        400: "The body cannot be parsed",
        401: "Missing, invalid or revoked API key",
        404: "Not found",
        409: "Conflict",
        413: "Upload too large",
        415: "Unsupported content type",
        422: "Invalid request",
        503: "Service unavailable",
    }
    return {code: {"model": ErrorPublic, "description": descriptions.get(code, "Error")} for code in codes}
