"""The sweep machinery on a real local Ray: nested MLflow runs, failed trials, results files, resume."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from clip2point.config import load_config
from clip2point.sweep.cli import run_and_report
from tests.sweep.dummy_study import DUMMY

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def sweep_env(tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("DUMMY_STUDY_MARKERS", str(markers))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # Ray workers import tests.sweep.dummy_study
    overrides = {
        "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "storage": str(tmp_path / "storage"),
        "sweep.results_dir": str(tmp_path / "results"),
        "sweep.max_concurrent": 1,
    }
    return tmp_path, markers, load_config(overrides=overrides)


def children(uri):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("clip2point")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return client, parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_sweep_nests_runs_records_failure_and_writes_results(sweep_env):
    import ray

    tmp, _, config = sweep_env
    ray.init(num_cpus=2, include_dashboard=False)  # after sweep_env: its workers see the test's environment
    try:
        outcome = run_and_report(DUMMY, config, resume=False, command="pytest", verbose=0)
    finally:
        ray.shutdown()
    assert {t.name: t.metrics.get("score") for t in outcome.trials if t.error is None} == {
        "R=1": 10.0,
        "R=2": 20.0,
    }
    assert [t.name for t in outcome.failed] == ["broken"] and "broken on purpose" in outcome.failed[0].error
    client, parents, kids = children(config.tracking.uri)
    assert (
        len(parents) == 1
        and parents[0].info.status == "FINISHED"
        and parents[0].info.run_name == "dummy_study"
    )
    assert {k.data.tags["cell"]: k.info.status for k in kids} == {
        "R=1": "FINISHED",
        "R=2": "FINISHED",
        "broken": "FAILED",
    }
    assert all(k.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for k in kids)
    r2 = next(k for k in kids if k.data.tags["cell"] == "R=2")
    assert r2.data.params["render.dilation"] == "2" and r2.data.metrics["score"] == 20.0
    assert [m.step for m in client.get_metric_history(r2.info.run_id, "progress")] == [0, 1]
    table = (tmp / "results" / "dummy_study.md").read_text()
    assert "| R=2 | 20.00 +- 1.00 (n=3; 95% CI 17.52 to 22.48) | 21.00 |" in table  # t(0.975, 2) / sqrt(3)
    assert "| broken | failed: RuntimeError: this cell is broken on purpose | - |" in table
    assert (tmp / "results" / "dummy_study.png").read_bytes()[:4] == b"\x89PNG"
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id)} >= {
        "dummy_study.md",
        "dummy_study.png",
    }


SCRIPT = """
import sys
from clip2point.config import load_config
from clip2point.schema import parse_override
from clip2point.sweep.cli import run_and_report
from tests.sweep.dummy_study import DUMMY
import ray
ray.init(num_cpus=2, include_dashboard=False)
config = load_config(overrides=dict(parse_override(a) for a in sys.argv[2:]))
run_and_report(DUMMY, config, resume=sys.argv[1] == "resume", command="test", verbose=0)
"""


def test_killed_sweep_resumes_and_runs_every_trial_once(sweep_env):
    tmp, markers, config = sweep_env
    args = [f"tracking.uri={config.tracking.uri}", f"storage={tmp / 'storage'}",
            f"sweep.results_dir={tmp / 'results'}", "sweep.max_concurrent=1"]  # fmt: skip
    env = {**os.environ, "DUMMY_STUDY_SLEEP": "3"}
    driver = subprocess.Popen([sys.executable, "-c", SCRIPT, "fresh", *args], env=env, start_new_session=True)
    deadline = time.time() + 120
    state = (
        tmp / "storage" / "sweeps" / "dummy_study" / "clip2point_sweep.json"
    )  # written once the store is set up
    while time.time() < deadline and not state.exists():
        time.sleep(0.5)
    while time.time() < deadline and not any(
        k.info.status == "FINISHED"
        for k in (children(config.tracking.uri)[2] if (tmp / "mlflow.db").exists() else [])
    ):
        time.sleep(0.5)
    # The driver and the Ray cluster it started (its session), mid-sweep; other Ray instances are untouched.
    subprocess.run(["pkill", "-KILL", "-s", str(driver.pid)], check=False)
    driver.wait()
    finished_before = {
        k.data.tags["cell"] for k in children(config.tracking.uri)[2] if k.info.status == "FINISHED"
    }
    assert 1 <= len(finished_before) < 3
    resumed = subprocess.run(
        [sys.executable, "-c", SCRIPT, "resume", *args],
        env={**os.environ, "DUMMY_STUDY_SLEEP": "0"},
        timeout=180,
    )
    assert resumed.returncode == 0
    _, parents, kids = children(config.tracking.uri)
    assert len(parents) == 1
    finished = [k.data.tags["cell"] for k in kids if k.info.status == "FINISHED"]
    assert sorted(finished) == ["R=1", "R=2"]  # each good cell finished exactly once
    assert all(k.info.status != "RUNNING" for k in kids)  # the interrupted trial's run was closed as KILLED
    per_cell = {}
    for marker in markers.iterdir():
        key = marker.name.rsplit("-", 1)[0]
        per_cell[key] = per_cell.get(key, 0) + 1
    for cell in finished_before:
        dilation = {"R=1": "1", "R=2": "2"}[cell]
        assert per_cell[f"{dilation}-0.02"] == 1, per_cell  # finished before the kill: not run again
    assert (
        "| R=1 | 10.00 +- 1.00 (n=3; 95% CI 7.52 to 12.48) |"
        in (tmp / "results" / "dummy_study.md").read_text()
    )
