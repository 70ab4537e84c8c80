"""MLflow tracking against a real sqlite store, read back with MlflowClient."""

from mlflow import MlflowClient

from fairl_ray.orchestration.tracking import Tracker, default_tracking_uri


def test_parent_child_runs_params_metrics_artifacts(tmp_path):
    uri = default_tracking_uri(tmp_path)
    tracker = Tracker(uri, artifact_root=tmp_path / "mlartifacts")
    parent = tracker.start_run("pipeline")
    tracker.log_params(parent, {f"p{i}": i for i in range(150)} | {"long": "x" * 10_000})
    child = tracker.start_run("irl", parent_run_id=parent, tags={"fairl.stage": "irl"})
    tracker.log_metrics(child, {"acc": 0.9, "nan": float("nan"), "flag": True, "text": "x"})
    tracker.log_curve(child, "loss", [3.0, 2.0, 1.0])
    (tmp_path / "table.json").write_text("{}")
    tracker.log_artifact(child, tmp_path / "table.json")
    tracker.end_run(child)
    tracker.end_run(parent)

    client = MlflowClient(uri)
    run = client.get_run(parent)
    assert run.data.params["p149"] == "149" and len(run.data.params["long"]) == 6000
    children = client.search_runs([tracker.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert [c.info.run_name for c in children] == ["irl"]
    c = children[0]
    assert c.data.metrics == {"acc": 0.9, "loss": 1.0}  # nan, bool and text are not metrics
    assert [m.value for m in client.get_metric_history(c.info.run_id, "loss")] == [3.0, 2.0, 1.0]
    assert [a.path for a in client.list_artifacts(c.info.run_id)] == ["table.json"]
    assert c.info.status == "FINISHED"
    # A second tracker on the same store reuses the experiment.
    assert Tracker(uri).experiment_id == tracker.experiment_id
