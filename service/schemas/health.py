"""Bodies of /healthz and /readyz."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class HealthPublic(BaseModel):
    status: Literal["ok"]


class ReadinessPublic(BaseModel):
    """Reachability of the job store and the broker."""

    status: Literal["ready", "unavailable"]
    database: str = Field(description="'ok', or why the job store is unreachable.")
    broker: str = Field(description="'ok', or why the broker is unreachable.")
    detail: str | None = Field(default=None, description="Which dependency failed, when one did.")
