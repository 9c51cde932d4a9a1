"""Prometheus metrics read from the job store at scrape time.

Workers on other machines finish jobs, so counters kept in the gateway's memory would miss them.
The store records every job, whichever process ran it.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from service import store
from service.db import session_scope
from service.settings import QUEUES
from service.tables import JOB_STATUSES, AuditRecord, VariantRecord

JOB_BUCKETS = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0]
VARIANT_BUCKETS = [0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]


class StoreCollector(Collector):
    """Jobs by status, queue depth, and job and variant durations, from the store."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with session_scope(self.database_url) as session:
            by_status = store.count_audits_by_status(session)
            queued = store.count_queued_by_queue(session)
            jobs = store.duration_buckets(session, column=AuditRecord.duration_seconds, buckets=JOB_BUCKETS)
            variants = store.duration_buckets(session, column=VariantRecord.duration_seconds, buckets=VARIANT_BUCKETS)

        status_gauge = GaugeMetricFamily("fairsqueeze_jobs", "Audit jobs in the store by status.", labels=["status"])
        for status in JOB_STATUSES:
            status_gauge.add_metric([status], by_status.get(status, 0))
        yield status_gauge

        depth = GaugeMetricFamily(
            "fairsqueeze_queue_depth", "Audit jobs waiting for a worker, by Celery queue.", labels=["queue"]
        )
        for queue in QUEUES:
            depth.add_metric([queue], queued.get(queue, 0))
        yield depth

        yield _histogram(
            "fairsqueeze_job_duration_seconds", "Run time of finished audit jobs, first start to end.", JOB_BUCKETS, jobs
        )
        yield _histogram(
            "fairsqueeze_variant_duration_seconds",
            "Time to build and evaluate one variant.",
            VARIANT_BUCKETS,
            variants,
        )


def _histogram(
    name: str, documentation: str, bounds: list[float], values: tuple[list[int], float, int]
) -> HistogramMetricFamily:
    counts, total, count = values
    buckets = [(repr(bound), cumulative) for bound, cumulative in zip(bounds, counts)]
    buckets.append(("+Inf", count))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


def create_registry(database_url: str) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(database_url))
    return registry
