"""Settings of the gateway and the workers, read from `FAIRSQUEEZE_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

QUEUES = ("cpu", "gpu")
MIN_WEBHOOK_SECRET_CHARACTERS = 16


class Settings(BaseSettings):
    """One place for every option of `fairsqueeze serve` and `fairsqueeze worker`."""

    # Validation errors leave out the input, so a rejected secret never reaches a log.
    model_config = SettingsConfigDict(
        env_prefix="FAIRSQUEEZE_", env_file=None, extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Field(
        default=Path("var"),
        description="Folder for uploaded files, ONNX variants and reports, and for the SQLite files of the "
        "embedded mode.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the job store; default: a SQLite file in data_dir.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker URL (redis://...); default: kombu's SQLAlchemy transport on a SQLite file "
        "in data_dir.",
    )
    result_backend: str | None = Field(
        default=None,
        description="Celery result backend; default: the broker's Redis when the broker is Redis, else none.",
    )
    broker_key_prefix: str = Field(
        default="",
        description="Prefix of every Redis key the broker and the result backend write, so several "
        "deployments can share one Redis database.",
    )
    max_upload_bytes: int = Field(default=1 << 30, ge=1, description="Largest accepted upload, in bytes.")
    soft_time_limit: int = Field(
        default=3 * 3600,
        ge=1,
        description="Seconds after which a running audit is asked to stop (the job then fails).",
    )
    hard_time_limit: int = Field(
        default=3 * 3600 + 300,
        ge=1,
        description="Seconds after which the worker process running an audit is killed.",
    )
    visibility_timeout: int | None = Field(
        default=None,
        description="Seconds before Redis hands an unacknowledged job to another worker; must exceed "
        "hard_time_limit. Default: hard_time_limit plus 10 minutes.",
    )
    redelivery_scan_interval: int = Field(
        default=60,
        ge=1,
        description="Seconds between a Redis-consuming worker's scans for messages past the visibility timeout.",
    )
    result_expires: int = Field(default=86_400, ge=1, description="Seconds Celery task results stay in Redis.")
    heartbeat_interval: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between the heartbeats a running job writes to the store.",
    )
    stale_after: float | None = Field(
        default=None,
        description="Seconds without a heartbeat after which a running job counts as lost and is queued "
        "again. Default: three heartbeat intervals.",
    )
    recovery_interval: float = Field(
        default=15.0,
        ge=0,
        description="Seconds between the gateway's scans for lost jobs; 0 turns the scan off.",
    )
    max_retries: int = Field(
        default=5,
        ge=0,
        description="Retries of a job after errors that can pass (store or broker unreachable).",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        description="Deliveries of a job that may start running it; a job whose worker is lost this often fails.",
    )
    worker_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Worker processes per `fairsqueeze worker`; default: Celery's choice (the CPU count).",
    )
    worker_queues: str = Field(default="cpu,gpu", description="Comma-separated queues a worker consumes.")
    log_level: str = Field(default="INFO", description="Level of the gateway and worker logs.")
    require_api_key: bool = Field(
        default=False,
        description="Reject requests without an API key (401). When false, a request without a key works on the "
        "records created without a key, and a request with a key on that key's records.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret (at least 16 characters) that signs the webhook deliveries of jobs created without "
        "an API key; jobs of an API key are signed with that key's own secret.",
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=100, description="POSTs of one webhook delivery before it is given up."
    )
    webhook_retry_delay: float = Field(
        default=5.0,
        gt=0,
        description="Seconds before the second POST of a delivery; each later wait doubles, up to "
        "webhook_retry_max_delay.",
    )
    webhook_retry_max_delay: float = Field(
        default=600.0, gt=0, description="Maximum wait between two POSTs, in seconds."
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, description="Seconds one POST may take before it counts as failed."
    )

    @field_validator("webhook_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_WEBHOOK_SECRET_CHARACTERS:
            raise ValueError(
                f"webhook_secret has {len(value.get_secret_value())} characters; use a random secret of at least "
                f"{MIN_WEBHOOK_SECRET_CHARACTERS}, for example from `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`"
            )
        return value

    @model_validator(mode="after")
    def _limits_in_order(self) -> Settings:
        if self.soft_time_limit >= self.hard_time_limit:
            raise ValueError(
                f"soft_time_limit ({self.soft_time_limit} s) must be below hard_time_limit "
                f"({self.hard_time_limit} s)"
            )
        if self.visibility_timeout is not None and self.visibility_timeout <= self.hard_time_limit:
            raise ValueError(
                f"visibility_timeout ({self.visibility_timeout} s) must exceed hard_time_limit "
                f"({self.hard_time_limit} s), or Redis hands running jobs to a second worker"
            )
        if self.stale_after is not None and self.stale_after <= self.heartbeat_interval:
            raise ValueError(
                f"stale_after ({self.stale_after} s) must exceed heartbeat_interval ({self.heartbeat_interval} s), "
                "or running jobs are taken for lost"
            )
        unknown = sorted(set(self.queues) - set(QUEUES))
        if unknown or not self.queues:
            raise ValueError(
                f"worker_queues names unknown queues {unknown or self.worker_queues!r}; "
                f"use a comma-separated subset of {', '.join(QUEUES)}"
            )
        return self

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'fairsqueeze.db'}"

    @property
    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{self.resolved_data_dir / 'broker.db'}"

    @property
    def resolved_result_backend(self) -> str | None:
        if self.result_backend:
            return self.result_backend
        if self.broker_uses_redis:
            return self.resolved_broker_url
        return None

    @property
    def broker_uses_redis(self) -> bool:
        return self.resolved_broker_url.startswith(("redis://", "rediss://", "redis+socket://"))

    @property
    def resolved_visibility_timeout(self) -> int:
        if self.visibility_timeout is not None:
            return self.visibility_timeout
        return self.hard_time_limit + 600

    @property
    def resolved_stale_after(self) -> float:
        if self.stale_after is not None:
            return self.stale_after
        return 3 * self.heartbeat_interval

    @property
    def queues(self) -> list[str]:
        return [name.strip() for name in self.worker_queues.split(",") if name.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the settings of this process, read once from the environment."""
    return Settings()
