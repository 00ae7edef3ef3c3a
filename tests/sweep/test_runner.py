"""The sweep machinery on a real local Ray: nested MLflow runs, failed trials, results files, resume."""

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

from clip2point import storage
from clip2point.config import load_config
from clip2point.sweep.cli import run_and_report
from tests.sweep.dummy_study import DUMMY

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def sweep_env(tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("DUMMY_STUDY_MARKERS", str(markers))  # for the sweep drivers the tests start
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # their Ray workers import tests.sweep.dummy_study
    overrides = {
        "data.root": str(tmp_path / "data"),  # no data is read; not a toy root, so nothing is built
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


def test_a_sweep_whose_results_cannot_be_written_ends_its_parent_run_failed(ray_session, sweep_env):
    tmp, _, config = sweep_env
    (tmp / "results").write_text("a file where the results folder should be")
    with pytest.raises(OSError):
        run_and_report(DUMMY, config, resume=False, command="pytest", verbose=0)
    _, (parent,), _ = children(config.tracking.uri)
    assert parent.info.status == "FAILED" and "results" in parent.data.tags["error"]


def test_sweep_nests_runs_records_failure_and_writes_results(ray_session, sweep_env):
    tmp, _, config = sweep_env
    outcome = run_and_report(DUMMY, config, resume=False, command="pytest", verbose=0)
    assert {t.name: t.metrics.get("score") for t in outcome.trials if t.error is None} == {
        "R=1": 10.0,
        "R=2": 20.0,
    }
    assert [t.name for t in outcome.failed] == ["broken"] and "broken on purpose" in outcome.failed[0].error
    one, two = (next(t.metrics for t in outcome.trials if t.name == name) for name in ("R=1", "R=2"))
    assert one["pid"] == two["pid"]  # one trial after the other in the same Ray actor
    assert one["global_draw"] == two["global_draw"]  # each from the same global random state
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
import os, sys
from clip2point.config import load_config
from clip2point.schema import parse_override
from clip2point.sweep.cli import run_and_report
from tests.sweep import dummy_study
import ray
ray.init(num_cpus=2, include_dashboard=False)
study = getattr(dummy_study, os.environ.get("DUMMY_STUDY", "DUMMY"))
config = load_config(overrides=dict(parse_override(a) for a in sys.argv[2:]))
run_and_report(study, config, resume=sys.argv[1] == "resume", command="test", verbose=0)
"""


def kill_mid_sweep(args: list[str], env: dict[str, str], state: str, tmp: Path) -> set[str]:
    """Start a fresh sweep driver; once its state file (a storage location) exists and one trial FINISHED
    in MLflow (``tmp/mlflow.db``), SIGKILL the driver and the Ray cluster it started (its session; other Ray
    instances are untouched). Returns the cells that had finished."""
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    driver = subprocess.Popen([sys.executable, "-c", SCRIPT, "fresh", *args], env=env, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not storage.exists(state):  # written once the store is set up
        time.sleep(0.5)
    while time.time() < deadline and not any(
        k.info.status == "FINISHED" for k in (children(uri)[2] if (tmp / "mlflow.db").exists() else [])
    ):
        time.sleep(0.5)
    subprocess.run(["pkill", "-KILL", "-s", str(driver.pid)], check=False)
    driver.wait()
    return {k.data.tags["cell"] for k in children(uri)[2] if k.info.status == "FINISHED"}


def checkout_copy(folder: Path) -> Path:
    """A copy of this checkout as a fresh clone would have it: no runs/, MLflow store, caches or data."""
    ignored = shutil.ignore_patterns(".git", ".venv", "runs", "mlflow.db", "mlruns", "cache", "data",
                                     "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache")  # fmt: skip
    return Path(shutil.copytree(ROOT, folder, ignore=ignored))


def test_killed_search_resumes_on_another_checkout_from_the_bucket_with_its_samplers_state(
    sweep_env, bucket, s3_server
):
    """An Optuna search whose state is in the bucket (storage from $CLIP2POINT_STORAGE): the driver is
    SIGKILLed mid-search, and a driver in another checkout, whose only link is the bucket and the tracking
    URI, resumes it. The trials that had finished are not run again; the resumed ones get new proposals (Tune
    keeps the searcher's state with the sweep's: a fresh sampler with the same seed would propose the same
    values again); the search runs num_samples trials in all, each FINISHED once, under the same parent."""
    tmp, markers, config = sweep_env
    root = f"s3://{bucket}/clip2point"
    args = [f"tracking.uri={config.tracking.uri}", f"sweep.results_dir={tmp / 'results'}",
            f"data.root={config.data.root}", "sweep.max_concurrent=1", "sweep.num_samples=4"]  # fmt: skip
    env = {**os.environ, "CLIP2POINT_STORAGE": root, "DUMMY_STUDY": "DUMMY_SEARCH"}
    state = f"{root}/sweeps/dummy_search/clip2point_sweep.json"
    finished_before = kill_mid_sweep(args, {**env, "DUMMY_STUDY_SLEEP": "3"}, state, tmp)
    assert 1 <= len(finished_before) < 4
    assert not (tmp / "storage").exists()  # nothing of the sweep went to a local folder
    keys = s3_server.keys(bucket, "clip2point/sweeps/dummy_search/")
    assert "clip2point/sweeps/dummy_search/clip2point_sweep.json" in keys
    assert any(key.rsplit("/", 1)[1].startswith("experiment_state") for key in keys)  # Tune's own state

    clone = checkout_copy(tmp / "clone")
    resumed = subprocess.run(
        [sys.executable, "-c", SCRIPT, "resume", *args],
        cwd=clone,
        env={**env, "PYTHONPATH": str(clone), "DUMMY_STUDY_SLEEP": "0"},
        timeout=240,
    )
    assert resumed.returncode == 0
    _, parents, kids = children(config.tracking.uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the same parent, re-attached
    done = [k for k in kids if k.info.status == "FINISHED"]
    finished = {k.data.tags["cell"]: float(k.data.params["render.radius"]) for k in done}
    assert (
        len(done) == len(finished) == 4 and len(set(finished.values())) == 4
    )  # no proposal repeated: the sampler went on
    assert all(k.info.status != "RUNNING" for k in kids)
    runs = Counter(float(marker.name.split("-")[1]) for marker in markers.iterdir())
    for cell in finished_before:
        assert runs[finished[cell]] == 1, runs  # not run again after the kill
    assert not (clone / "runs").exists()  # the clone read and wrote the sweep's state in the bucket only
    assert (
        "Best trial (score 20.00): " in (tmp / "results" / "dummy_search.md").read_text()
    )  # the default R=2, any radius
