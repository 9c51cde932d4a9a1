"""MLflow logging: an audit run by the pipeline appears in a local SQLite tracking store."""

from __future__ import annotations

import sys

import pytest

from tests.utils.models import export_mlp, make_table
from workers.mlflow_logging import (
    TRACKING_URI_VARIABLE,
    MlflowUnavailable,
    metric_key,
    report_metrics,
    require_mlflow,
)
from workers.pipeline import run_audit
from workers.spec import parse_spec

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) is not installed")
# MLflow's SQLite store uses an SQLAlchemy loader option that SQLAlchemy 2 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("mlflow")
    export_mlp(folder / "model.onnx", n_features=4, seed=0)
    table = make_table(400, seed=1)
    table["band"] = ["young" if index % 2 else "old" for index in range(len(table))]
    table.to_csv(folder / "eval.csv", index=False)
    spec = parse_spec(
        {
            "model": "model.onnx",
            "data": {"evaluation": "eval.csv", "label": "label", "sensitive": ["group", "band"]},
            "recipes": [{"name": "int8-dynamic", "steps": [{"method": "quantize_dynamic"}]}],
            "bootstrap": {"resamples": 100},
            "evaluation": {"latency_runs": 1},
            "gate": {"rules": [{"metric": "accuracy", "min": 0.3}]},
        }
    )
    uri = f"sqlite:///{folder / 'tracking' / 'mlflow.db'}"
    (folder / "tracking").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TRACKING_URI_VARIABLE, uri)
        # MLflow's own default artifact root is ./mlruns; the run must not write into the working folder.
        patch.chdir(folder)
        report = run_audit(spec, out_dir=folder / "out", base_dir=folder)

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fairsqueeze")
    runs = client.search_runs([experiment.experiment_id])
    return report, client, runs, folder


def test_one_finished_run_logged(logged):
    _, _, runs, _ = logged

    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"


def test_run_metrics_match_report(logged):
    report, _, runs, _ = logged
    metrics = runs[0].data.metrics
    base, variant = report["variants"]

    assert metrics["base/accuracy"] == pytest.approx(base["metrics"]["overall"]["accuracy"])
    assert metrics["int8-dynamic/size_bytes"] == variant["artifact"]["bytes"]
    gap = variant["metrics"]["gaps"]["group"]["equalized_odds_difference"]
    assert metrics["int8-dynamic/gap/group/equalized_odds_difference"] == pytest.approx(gap["value"])
    assert metrics["int8-dynamic/gap/group/equalized_odds_difference/ci_high"] == pytest.approx(gap["ci"][1])
    group_accuracy = variant["metrics"]["by_group"]["group"]["a"]["accuracy"]
    assert metrics["int8-dynamic/group/group/a/accuracy"] == pytest.approx(group_accuracy)
    assert metrics["int8-dynamic/gate_passed"] == 1.0


def test_intersection_keys_sanitized(logged):
    _, _, runs, _ = logged
    metrics = runs[0].data.metrics

    assert "base/group/group_band/a_old/accuracy" in metrics
    assert "int8-dynamic/change/gap/group_band/equalized_odds_difference" in metrics


def test_run_tags_and_params(logged):
    report, _, runs, _ = logged
    data = runs[0].data

    assert data.tags["fairsqueeze.gate"] == "passed"
    assert data.tags["fairsqueeze.recommended"] == report["gate"]["recommended"]
    assert data.params["recipes"] == "int8-dynamic"
    assert data.params["bootstrap_resamples"] == "100"


def test_run_artifacts_include_files(logged):
    _, client, runs, _ = logged
    run_id = runs[0].info.run_id

    top = {item.path for item in client.list_artifacts(run_id)}
    models = {item.path for item in client.list_artifacts(run_id, "models")}

    assert {"report.json", "report.html", "gate.json", "junit.xml"} <= top
    assert models == {"models/base.onnx", "models/int8-dynamic.onnx"}


def test_artifacts_stored_beside_database(logged):
    _, _, runs, folder = logged

    assert runs[0].info.artifact_uri.startswith((folder / "tracking" / "mlartifacts").as_uri())
    assert not (folder / "mlruns").exists()


def test_metric_count_covers_groups(logged):
    report, _, runs, _ = logged

    assert len(runs[0].data.metrics) == len(report_metrics(report))


def test_metric_key_replaces_unsafe_characters():
    assert metric_key("v1", "group", "sex&race", "Female&Black", "accuracy") == "v1/group/sex_race/Female_Black/accuracy"
    assert metric_key("v1", "gap", "race", "tpr_difference:>50K") == "v1/gap/race/tpr_difference:_50K"


def test_missing_mlflow_names_extra(monkeypatch):
    # A None entry in sys.modules makes `import mlflow` raise ImportError, as on a machine without it.
    monkeypatch.setitem(sys.modules, "mlflow", None)

    with pytest.raises(MlflowUnavailable, match=r"pip install 'fairsqueeze\[mlflow\]'"):
        require_mlflow()
