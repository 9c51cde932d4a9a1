"""Queue routing and the Celery delivery settings of the audit task."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import Settings
from workers.celery_app import DELIVER_WEBHOOK_TASK, RUN_AUDIT_TASK, TRAINING_METHODS, create_celery, job_trains, queue_for
from workers.spec import JobSpec, Recipe, Step, parse_spec


def spec_with_methods(*methods: str) -> JobSpec:
    """A spec whose one recipe uses `methods`, built without the registry's check of method names."""
    base = parse_spec({"model": "m", "data": {"evaluation": "e", "label": "y", "sensitive": ["s"]}})
    steps = [Step.model_construct(method=method) for method in methods]
    return base.model_copy(update={"recipes": [Recipe.model_construct(name="r", steps=steps, intervention=None)]})


def test_default_recipes_use_cpu_queue():
    spec = parse_spec({"model": "m", "data": {"evaluation": "e", "label": "y", "sensitive": ["s"]}})

    assert job_trains(spec) is False
    assert queue_for(spec) == "cpu"


@pytest.mark.parametrize("method", sorted(TRAINING_METHODS))
def test_training_method_routes_to_gpu(method):
    spec = spec_with_methods("prune", method)

    assert job_trains(spec) is True
    assert queue_for(spec) == "gpu"


def test_compression_only_stays_on_cpu():
    spec = spec_with_methods("prune", "quantize_static")

    assert queue_for(spec) == "cpu"


def test_redis_visibility_exceeds_hard_limit():
    settings = Settings(broker_url="redis://127.0.0.1:6379/3", soft_time_limit=100, hard_time_limit=200)
    app = create_celery(settings)
    options = app.conf.broker_transport_options

    assert options["visibility_timeout"] > app.conf.task_time_limit
    assert app.conf.task_soft_time_limit == 100
    assert app.conf.task_time_limit == 200


def test_delivery_settings_survive_lost_workers():
    app = create_celery(Settings(broker_url="redis://127.0.0.1:6379/3"))

    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert sorted(queue.name for queue in app.conf.task_queues) == ["cpu", "gpu", "webhooks"]


def test_redis_results_expire():
    app = create_celery(Settings(broker_url="redis://127.0.0.1:6379/3", result_expires=600))

    assert app.conf.result_backend == "redis://127.0.0.1:6379/3"
    assert app.conf.result_expires == 600


def test_gateway_app_stores_no_results():
    app = create_celery(Settings(broker_url="redis://127.0.0.1:6379/3"), results=False)

    assert app.conf.result_backend is None


def test_key_prefix_reaches_broker_and_results():
    app = create_celery(Settings(broker_url="redis://127.0.0.1:6379/3", broker_key_prefix="run-7:"))

    assert app.conf.broker_transport_options["global_keyprefix"] == "run-7:"
    assert app.conf.result_backend_transport_options["global_keyprefix"] == "run-7:"


def test_webhook_task_registered_under_name():
    from workers.tasks import app, deliver_webhook

    assert deliver_webhook.name == DELIVER_WEBHOOK_TASK
    assert DELIVER_WEBHOOK_TASK in app.tasks


def test_task_registered_under_name():
    from workers.tasks import run_audit_job

    assert run_audit_job.name == RUN_AUDIT_TASK
    assert run_audit_job.acks_late is True


def test_short_visibility_timeout_rejected():
    with pytest.raises(ValidationError, match="visibility_timeout"):
        Settings(soft_time_limit=10, hard_time_limit=20, visibility_timeout=20)


def test_soft_limit_below_hard_limit():
    with pytest.raises(ValidationError, match="soft_time_limit"):
        Settings(soft_time_limit=30, hard_time_limit=30)


def test_unknown_worker_queue_rejected():
    with pytest.raises(ValidationError, match="worker_queues"):
        Settings(worker_queues="cpu,tpu")


def test_queues_have_own_routing_keys():
    app = create_celery(Settings())
    bindings = {queue.name: (queue.exchange.name, queue.routing_key) for queue in app.amqp.queues.values()}

    assert bindings == {"cpu": ("cpu", "cpu"), "gpu": ("gpu", "gpu"), "webhooks": ("webhooks", "webhooks")}


def test_training_set_matches_registry():
    from workers.compression import get_method, method_names

    registered_trainers = {name for name in method_names() if get_method(name).trains}

    assert registered_trainers <= TRAINING_METHODS
    assert registered_trainers == TRAINING_METHODS & set(method_names())


@pytest.mark.parametrize(
    ("intervention", "queue"),
    [("adversarial", "gpu"), ("reweighing", "gpu"), ("resampling", "gpu"), ("fair_pruning", "gpu"), ("thresholds", "cpu")],
)
def test_intervention_routes_by_training(intervention, queue):
    spec = parse_spec(
        {
            "model": "m",
            "data": {"evaluation": "e", "training": "t", "label": "y", "sensitive": ["s"]},
            "recipes": [
                {
                    "name": "prune-fair",
                    "steps": [{"method": "prune", "sparsity": 0.5}],
                    "intervention": {"method": intervention, "placement": "after", "attribute": "s"},
                }
            ],
        }
    )

    assert queue_for(spec) == queue


def test_adversarial_intervention_routes_to_gpu():
    spec = parse_spec(
        {
            "model": "m",
            "data": {"evaluation": "e", "training": "t", "label": "y", "sensitive": ["s"]},
            "recipes": [
                {
                    "name": "prune-fair",
                    "steps": [{"method": "prune", "sparsity": 0.5}],
                    "intervention": {"method": "adversarial", "placement": "before", "attribute": "s"},
                }
            ],
        }
    )

    assert queue_for(spec) == "gpu"
