"""The Celery application: broker, queues, time limits and delivery guarantees.

Tasks live in `workers.tasks`. This module imports neither torch nor the engine, so the gateway
imports it to route and send jobs.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from kombu import Exchange, Queue

from service.logs import configure_logging
from service.settings import QUEUES, Settings, get_settings
from workers.spec import JobSpec

logger = logging.getLogger(__name__)

RUN_AUDIT_TASK = "fairsqueeze.run_audit_job"
DELIVER_WEBHOOK_TASK = "fairsqueeze.deliver_webhook"
# Webhook deliveries have a queue of their own that every worker consumes, so a delivery does not
# wait behind the audits queued on cpu or gpu.
WEBHOOK_QUEUE = "webhooks"

# Methods (compression steps or fairness interventions) that train a network. Jobs using any of
# them go to the `gpu` queue, and workers run torch on CUDA when torch finds a GPU.
TRAINING_METHODS = frozenset({"finetune", "distill", "adversarial"})
# Interventions that run gradient steps at any placement: reweighing and resampling train the model,
# fair_pruning scores weights by per-group gradients. Threshold post-processing does not train.
TRAINING_INTERVENTIONS = frozenset({"adversarial", "reweighing", "resampling", "fair_pruning"})


def job_trains(spec: JobSpec) -> bool:
    """Return whether any recipe of the job trains, by TRAINING_METHODS and TRAINING_INTERVENTIONS."""
    for recipe in spec.resolved_recipes():
        if any(step.method in TRAINING_METHODS for step in recipe.steps):
            return True
        if recipe.intervention is not None and recipe.intervention.method in TRAINING_INTERVENTIONS:
            return True
    return False


def queue_for(spec: JobSpec) -> str:
    return "gpu" if job_trains(spec) else "cpu"


def transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_uses_redis:
        options: dict[str, Any] = {
            "visibility_timeout": settings.resolved_visibility_timeout,
            "unacked_restore_interval": settings.redelivery_scan_interval,
            "unacked_restore_throttle": 1,
        }
        if settings.broker_key_prefix:
            options["global_keyprefix"] = settings.broker_key_prefix
        return options
    # kombu's SQLAlchemy transport passes these to create_engine. It has no visibility timeout:
    # a message taken by a worker that dies is recovered by the gateway's scan for lost jobs.
    return {"connect_args": {"timeout": 30}}


def create_celery(settings: Settings, *, results: bool = True) -> Celery:
    """Build a Celery app for `settings`; the gateway uses one to send, workers one to consume.

    The gateway passes `results=False`: it reads outcomes from the job store, so it needs no
    result backend, while workers still store task results (which expire after `result_expires`).
    """
    app = Celery("fairsqueeze", include=["workers.tasks"])
    backend_options: dict[str, Any] = {}
    if settings.broker_key_prefix:
        backend_options["global_keyprefix"] = settings.broker_key_prefix
    app.conf.update(
        broker_url=settings.resolved_broker_url,
        broker_transport_options=transport_options(settings),
        broker_connection_retry_on_startup=True,
        result_backend=settings.resolved_result_backend if results else None,
        result_backend_transport_options=backend_options,
        result_expires=settings.result_expires,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Each queue gets an exchange and routing key of its own. Without them Celery binds every queue
        # to the default queue's exchange and key, so each job would reach both queues.
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in (*QUEUES, WEBHOOK_QUEUE)
        ],
        task_default_queue="cpu",
        # A job is acknowledged only when its task returns, so a lost worker's job is delivered again.
        # The store's attempt counter keeps the second delivery from running it twice.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.soft_time_limit,
        task_time_limit=settings.hard_time_limit,
        worker_concurrency=settings.worker_concurrency,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


@signals.setup_logging.connect
def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    configure_logging(loglevel or get_settings().log_level)


@signals.worker_process_init.connect
def _forget_parent_connections(**_: Any) -> None:
    # kombu's SQLAlchemy transport caches engines on the class; a forked pool process must not reuse
    # the SQLite connections its parent opened.
    try:
        from kombu.transport.sqlalchemy import Channel
    except ImportError:
        return
    Channel._engines.clear()


app = create_celery(get_settings())
