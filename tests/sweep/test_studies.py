"""Every study end to end on the toy world (smallest sizes, a tiny CLIP), and the sweep in MLflow's own UI."""

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from clip2point.config import load_config
from clip2point.sweep.cli import run_and_report
from clip2point.sweep.studies import adapter, hpo, pretrain, rendering
from clip2point.toy import build_toy_world
from tests.engine.pretrain_fixtures import write_local_clip
from tests.sweep.browser import dump_dom, mlflow_ui, screenshot

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def toy_setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("studies")
    build_toy_world(base / "toy", seed=0, size="small", progress=False)
    return base, write_local_clip(base / "clip")


def study_config(base: Path, clip: str, name: str, **extra):
    work = base / name
    overrides = {
        "model.name": clip, "model.pretrained": None, "data.root": str(base / "toy"), "data.num_points": 64,
        "render.views": 6, "fewshot.shots": 2, "fewshot.seeds": [0, 1], "fewshot.epochs": 2,
        "fewshot.batch_size": 8, "fewshot.feature_cache": str(work / "features"),
        "pretrain.epochs": 1, "pretrain.batch_size": 4, "pretrain.cpus_per_worker": 1,
        "pretrain.max_failures": 0, "pretrain.storage": str(work / "pretrain"),
        "sweep.storage": str(work / "sweeps"), "sweep.results_dir": str(work / "results"),
        "sweep.max_concurrent": 2, "tracking.uri": f"sqlite:///{work / 'mlflow.db'}",
    }  # fmt: skip
    work.mkdir()
    return work, load_config(overrides=overrides | extra)


def check_every_cell(study, work: Path, outcome, expected_trials: int):
    assert not outcome.failed, outcome.failed
    table = (work / "results" / f"{study.name}.md").read_text()
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("| ") and "(measured)" not in line and "---" not in line
    ]
    assert len(rows) == expected_trials
    assert not any("failed" in r or "not run" in r for r in rows)
    assert (work / "results" / f"{study.name}.png").read_bytes()[:4] == b"\x89PNG"
    client = MlflowClient(outcome.tracking_uri)
    kids = client.search_runs(
        [client.get_run(outcome.parent_run_id).info.experiment_id],
        f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'",
    )
    assert sum(k.info.status == "FINISHED" for k in kids) == expected_trials
    assert client.get_run(outcome.parent_run_id).info.status == "FINISHED"
    return table


def test_rendering_study_and_its_runs_in_the_mlflow_ui(ray_session, toy_setup):
    base, clip = toy_setup
    work, config = study_config(base, clip, "rendering")
    outcome = run_and_report(rendering.STUDY, config, resume=False, command="test", verbose=0)
    table = check_every_cell(rendering.STUDY, work, outcome, len(rendering.CELLS))
    assert "| minimum R=2 |" in table and "+- " in table and "(n=2)" in table
    assert "Toy-world results" in table  # the data root is a toy world
    # Bare `mlflow ui` in the folder of mlflow.db, and a real browser on it.
    with mlflow_ui(work) as url:
        client = MlflowClient(outcome.tracking_uri)
        experiment = client.get_run(outcome.parent_run_id).info.experiment_id
        runs_page = f"{url}/#/experiments/{experiment}/runs"
        dom = dump_dom(runs_page, base / "chrome-a")
        assert "ablation_rendering" in dom
        assert (
            f"<strong>{len(rendering.CELLS) + 1}</strong> matching runs" in dom
        )  # the parent and its trials
        parent_page = f"{runs_page}/{outcome.parent_run_id}"
        dom = dump_dom(parent_page, base / "chrome-b")
        for cell in rendering.CELLS:
            assert f"ablation_rendering/{cell.name}" in dom
        shot = screenshot(runs_page, ROOT / "test-artifacts" / "mlflow_ui_sweep.png", base / "chrome-c")
        assert shot.stat().st_size > 20_000


def test_adapter_study(ray_session, toy_setup):
    base, clip = toy_setup
    work, config = study_config(base, clip, "adapter")
    outcome = run_and_report(adapter.STUDY, config, resume=False, command="test", verbose=0)
    check_every_cell(adapter.STUDY, work, outcome, len(adapter.CELLS))
    encoder = work / "pretrain" / adapter.ENCODER_RUN / "best_depth_encoder.safetensors"
    assert encoder.is_file()  # pre-trained first, since the config named no depth encoder


def test_pretrain_study(ray_session, toy_setup):
    base, clip = toy_setup
    work, config = study_config(
        base, clip, "pretrain", **{"sweep.cpus_per_trial": 0.01, "sweep.max_concurrent": 1}
    )
    outcome = run_and_report(pretrain.STUDY, config, resume=False, command="test", verbose=0)
    check_every_cell(pretrain.STUDY, work, outcome, len(pretrain.CELLS))
    intra = {t.name: t.metrics for t in outcome.trials}
    assert set(intra) == {c.name for c in pretrain.CELLS}
    assert all(0 <= m["zeroshot_acc"] <= 100 for m in intra.values())


def test_hpo_study(ray_session, toy_setup):
    base, clip = toy_setup
    work, config = study_config(base, clip, "hpo", **{"sweep.num_samples": 3, "fewshot.epochs": 4})
    outcome = run_and_report(hpo.STUDY, config, resume=False, command="test", verbose=0)
    check_every_cell(hpo.STUDY, work, outcome, 3)
    best = (work / "results" / "hpo_fewshot.best.yaml").read_text()
    assert "fewshot:" in best and "lr:" in best and "epochs:" in best
    assert "Best trial (test_acc" in (work / "results" / "hpo_fewshot.md").read_text()
    assert json.dumps(sorted(outcome.trials[0].params)) == json.dumps(
        ["fewshot.dropout", "fewshot.epochs", "fewshot.lr", "fewshot.weight_decay"]
    )
