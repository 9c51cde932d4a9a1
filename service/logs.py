"""Logging set-up shared by the gateway and the workers: every line carries the job id, if any."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s [job %(job_id)s] %(message)s"

job_id_var: ContextVar[str] = ContextVar("fairsqueeze_job_id", default="-")


class JobIdFilter(logging.Filter):
    """Adds `record.job_id` from the current context, so formats can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            record.job_id = job_id_var.get()
        return True


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag every log line written inside the block with `job_id`."""
    token = job_id_var.set(job_id)
    try:
        yield
    finally:
        job_id_var.reset(token)


def install_job_filter(handler: logging.Handler) -> None:
    if not any(isinstance(item, JobIdFilter) for item in handler.filters):
        handler.addFilter(JobIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))


def configure_logging(level: str | int = "INFO") -> None:
    """Send logs to stderr in the job-id format; safe to call more than once."""
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        install_job_filter(handler)
