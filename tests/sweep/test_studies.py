"""A study end to end on the toy world (smallest sizes, a tiny CLIP) and in MLflow's own UI, and a study's
shared pre-training step. The other studies run end to end in ``test_reproduce.py``."""

from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from clip2point.config import load_config
from clip2point.schema import with_overrides
from clip2point.sweep.cli import run_and_report
from clip2point.sweep.studies import rendering
from clip2point.sweep.studies.common import ENCODER_RUN, with_depth_encoder
from clip2point.tracking import Tracker
from tests.sweep.browser import dump_dom, mlflow_ui, screenshot
from tests.toy_setup import toy_overrides

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def toy_setup(toy_world, tiny_clip_dir, tmp_path):
    return tmp_path, toy_world, tiny_clip_dir


def study_config(base: Path, world: Path, clip: str, name: str):
    work = base / name
    work.mkdir()
    overrides = toy_overrides(world, clip, work) | {"sweep.max_concurrent": 2}
    return work, load_config(overrides=overrides)


def check_every_cell(study, work: Path, outcome, expected_trials: int):
    assert not outcome.failed, outcome.failed
    table = (work / "results" / f"{study.name}.md").read_text()
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("| ") and "(measured" not in line and "---" not in line
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
    base, world, clip = toy_setup
    work, config = study_config(base, world, clip, "rendering")
    outcome = run_and_report(rendering.STUDY, config, resume=False, command="test", verbose=0)
    table = check_every_cell(rendering.STUDY, work, outcome, len(rendering.CELLS))
    assert "| minimum square R=2 |" in table and "+- " in table and "(n=2; 95% CI" in table
    assert "Toy-world results" in table  # the data root is a toy world
    check_a_cell_recomputed_here_gives_the_sweeps_numbers(work, config, outcome)
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
        gray = Image.open(shot).convert("L")
        assert gray.size == (1400, 900)
        assert max(gray.histogram()) < 0.97 * 1400 * 900  # a page drawn, not a blank or single-colour one


def check_a_cell_recomputed_here_gives_the_sweeps_numbers(work: Path, config, outcome) -> None:
    """Trials reuse their Ray actors (7 cells ran in at most 2 processes), yet the last cell, recomputed in
    this test's process (another history of random draws) gives the sweep's numbers: nothing a trial
    computes depends on what ran before it in its process."""
    assert len({trial.metrics["pid"] for trial in outcome.trials}) <= 2
    cell = rendering.CELLS[-1]
    reported = next(trial for trial in outcome.trials if trial.name == cell.name).metrics
    torch.manual_seed(12345)  # a global random state no trial started from
    tracker = Tracker.start(
        with_overrides(config, {"tracking.uri": f"sqlite:///{work / 'again.db'}"}), "again"
    )
    with tracker.active():
        again = rendering.STUDY.trial(with_overrides(config, cell.overrides), tracker, lambda metrics: None)
    assert again == {name: reported[name] for name in again}


def test_a_study_without_a_depth_encoder_pretrains_one_first_and_then_reuses_it(
    ray_session, toy_setup, capsys
):
    """Tables 1-4 and the search, run on their own, need a pre-trained depth encoder: without
    ``model.depth_encoder`` the shared pre-training run is made once; a second study reuses it (the
    finished run's resume returns without starting Ray Train)."""
    base, world, clip = toy_setup
    work, config = study_config(base, world, clip, "prepare")
    prepared = with_depth_encoder(config)
    encoder = work / "storage" / "pretrain" / ENCODER_RUN / "best_depth_encoder.safetensors"
    assert prepared.model.depth_encoder == str(encoder) and encoder.is_file()
    made = encoder.stat().st_mtime_ns
    capsys.readouterr()
    assert with_depth_encoder(config).model.depth_encoder == str(encoder)
    assert f"pre-training run '{ENCODER_RUN}': all 1 epoch(s) done already, nothing to train" in (
        capsys.readouterr().out
    )
    assert encoder.stat().st_mtime_ns == made  # the finished run was resumed, not trained again
    assert with_depth_encoder(prepared) is prepared  # an encoder in the config is used as it is
    client = MlflowClient(config.tracking.uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name(config.tracking.experiment).experiment_id],
        "tags.stage = 'pretrain'",
    )  # one pre-training run, one epoch logged once
    assert run.info.run_name == ENCODER_RUN
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss_total")] == [1]
