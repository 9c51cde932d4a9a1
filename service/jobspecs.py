"""Turn an API job spec, which names stored models and datasets by id, into one the engine runs."""

from __future__ import annotations

from service.storage import ArtifactStorage
from service.tables import DatasetRecord, ModelRecord
from workers.spec import JobSpec


def resolve_paths(
    spec: JobSpec,
    *,
    model: ModelRecord,
    evaluation: DatasetRecord,
    training: DatasetRecord | None,
    storage: ArtifactStorage,
) -> JobSpec:
    """Replace the ids in `spec` with file paths relative to the storage root.

    The engine gets `base_dir=storage.root`, so the report names files as `models/<id>/model.onnx`
    on every machine that mounts the shared folder. A spec that does not set `data.delimiter`
    reads CSV files with the delimiter given when the evaluation table was uploaded. The callback
    URL is dropped.
    """
    data_update: dict[str, object] = {
        "evaluation": storage.relative(storage.dataset_path(evaluation.id, evaluation.filename)),
    }
    if training is not None:
        data_update["training"] = storage.relative(storage.dataset_path(training.id, training.filename))
    if "delimiter" not in spec.data.model_fields_set:
        data_update["delimiter"] = evaluation.delimiter

    # The engine has no use for the callback URL, and leaving it out keeps it out of the report.
    return spec.model_copy(
        update={
            "model": storage.relative(storage.model_path(model.id)),
            "data": spec.data.model_copy(update=data_update),
            "callback_url": None,
        }
    )
