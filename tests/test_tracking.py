"""MLflow tracking against a real sqlite store, read back through MLflow's own client."""

import json

import pytest
from mlflow import MlflowClient

from clip2point.config import ExperimentConfig
from clip2point.paths import project_root
from clip2point.schema import flatten, with_overrides
from clip2point.tracking import Tracker, resolve_tracking_uri


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_run_logs_params_metrics_tags_and_artifacts(store, tmp_path):
    cfg = with_overrides(ExperimentConfig(), {"render.dilation": 4, "seed": 5})
    picture = tmp_path / "grid.png"
    picture.write_bytes(b"\x89PNG fake")
    with Tracker.start(
        cfg, "unit-run", uri=store, experiment="tests", tags={"dataset_fingerprint": "abc"}
    ).active() as t:
        for epoch in range(3):
            t.log_metrics({"loss": 1.0 / (epoch + 1), "acc": 10.0 * epoch}, step=epoch)
        t.log_artifact(picture, "pictures")
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(t.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "unit-run"
    assert run.data.params == {k: str(v) for k, v in flatten(cfg).items()}
    assert run.data.tags["dataset_fingerprint"] == "abc"
    assert run.data.tags["clip2point_version"]
    assert run.data.tags["git_revision"]
    history = client.get_metric_history(t.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    artifacts = {a.path for a in client.list_artifacts(t.run_id)}
    assert {"config.yaml", "pictures"} <= artifacts
    config_text = (tmp_path / "dl").mkdir() or client.download_artifacts(
        t.run_id, "config.yaml", str(tmp_path / "dl")
    )
    assert "dilation: 4" in open(config_text).read()


def test_failing_run_is_recorded_failed_with_traceback(store, tmp_path):
    tracker = Tracker.start(ExperimentConfig(), "doomed", uri=store, experiment="tests")
    with pytest.raises(RuntimeError, match="boom"), tracker.active():
        tracker.log_metrics({"loss": 2.0}, step=0)
        raise RuntimeError("boom")
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: boom"
    path = client.download_artifacts(tracker.run_id, "error.txt", str(tmp_path))
    assert "raise RuntimeError" in open(path).read()
    assert client.get_metric_history(tracker.run_id, "loss")[0].value == 2.0  # nothing lost


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(0)], ids=["ctrl-c", "tune stops the trial"])
def test_a_run_stopped_from_outside_is_killed_not_failed(store, stop):
    tracker = Tracker.start(ExperimentConfig(), "stopped", uri=store, experiment="tests")
    with pytest.raises(type(stop)), tracker.active():
        raise stop
    run = MlflowClient(tracking_uri=store).get_run(tracker.run_id)
    assert run.info.status == "KILLED" and "error" not in run.data.tags
    assert run.data.tags["killed_reason"] == f"stopped from outside ({type(stop).__name__}: {stop})"


def test_nested_runs_and_reattach(store):
    parent = Tracker.start(ExperimentConfig(), "sweep", uri=store, experiment="tests")
    child = Tracker.start(ExperimentConfig(), "trial-0", uri=store, experiment="tests", parent=parent)
    Tracker.attach(store, child.run_id).log_metrics({"acc": 50.0}, step=1)
    client = MlflowClient(tracking_uri=store)
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id
    assert client.get_run(child.run_id).data.metrics["acc"] == 50.0


def test_tracking_uri_precedence(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = resolve_tracking_uri()
    assert default == f"sqlite:///{project_root() / 'mlflow.db'}"
    assert project_root().is_absolute()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri() == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_a_recorded_run_resumes_running_and_ends_again(store):
    """A driver records its run (as JSON in its storage); a later process resumes it from that record."""
    first = Tracker.start(ExperimentConfig(), "interrupted", uri=store, experiment="tests")
    first.log_metrics({"loss": 2.0}, step=1)
    first.fail(KeyboardInterrupt())
    client = MlflowClient(tracking_uri=store)
    assert client.get_run(first.run_id).info.status == "KILLED"
    record = json.loads(json.dumps(first.record()))  # as storage keeps it
    assert record == {"tracking_uri": store, "run_id": first.run_id}
    with Tracker.resume(record).active() as again:
        assert client.get_run(first.run_id).info.status == "RUNNING"
        again.log_metrics({"loss": 1.0}, step=2)
    assert again.run_id == first.run_id and client.get_run(first.run_id).info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(first.run_id, "loss")] == [2.0, 1.0]
