"""Every study end to end on the toy world (smallest sizes, a tiny CLIP), and the sweep in MLflow's own UI."""

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from clip2point.config import load_config
from clip2point.stats import estimate, seed_values
from clip2point.sweep.cli import run_and_report
from clip2point.sweep.studies import adapter, hpo, pretrain, rendering
from clip2point.sweep.studies.common import ENCODER_RUN
from clip2point.toy import build_toy_world
from tests.sweep.browser import dump_dom, mlflow_ui, screenshot
from tests.tiny_clip import write_tiny_clip

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def toy_setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("studies")
    build_toy_world(base / "toy", seed=0, size="small", progress=False)
    return base, write_tiny_clip(base / "clip")


def study_config(base: Path, clip: str, name: str, **extra):
    work = base / name
    overrides = {
        "model.name": clip, "model.pretrained": None, "data.root": str(base / "toy"), "data.num_points": 64,
        "render.views": 6, "fewshot.shots": 2, "fewshot.seeds": [0, 1], "fewshot.epochs": 2,
        "fewshot.batch_size": 8, "fewshot.feature_cache": str(work / "features"),
        "pretrain.epochs": 1, "pretrain.batch_size": 4, "pretrain.cpus_per_worker": 1,
        "pretrain.max_failures": 0, "storage": str(work / "storage"),
        "sweep.results_dir": str(work / "results"),
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


def child_run(client: MlflowClient, outcome, cell: str):
    """The finished MLflow child run of a sweep's cell."""
    experiment = client.get_run(outcome.parent_run_id).info.experiment_id
    found = client.search_runs(
        [experiment],
        f"tags.mlflow.parentRunId = '{outcome.parent_run_id}' and tags.cell = '{cell}' "
        "and attributes.status = 'FINISHED'",
    )
    assert len(found) == 1, cell
    return found[0]


def test_rendering_study_and_its_runs_in_the_mlflow_ui(ray_session, toy_setup):
    base, clip = toy_setup
    work, config = study_config(base, clip, "rendering")
    outcome = run_and_report(rendering.STUDY, config, resume=False, command="test", verbose=0)
    table = check_every_cell(rendering.STUDY, work, outcome, len(rendering.CELLS))
    assert "| minimum square R=2 |" in table and "+- " in table and "(n=2; 95% CI" in table
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
    table = check_every_cell(adapter.STUDY, work, outcome, len(adapter.CELLS))
    encoder = work / "storage" / "pretrain" / ENCODER_RUN / "best_depth_encoder.safetensors"
    assert encoder.is_file()  # pre-trained first, since the config named no depth encoder
    client = MlflowClient(outcome.tracking_uri)
    for trial in outcome.trials:
        cell = adapter.STUDY.cell(trial.name, config)
        run = child_run(client, outcome, trial.name)
        # Every cell ran its own switches on the pre-trained encoder, but the both-CLIP cell on CLIP's.
        for key in ("path", "aggregator", "fusion", "variant"):
            assert run.data.params[f"fewshot.adapter.{key}"] == cell.overrides[f"fewshot.adapter.{key}"]
        both_clip = "model.depth_encoder" in cell.overrides
        assert run.data.params["model.depth_encoder"] == ("None" if both_clip else str(encoder))
        per_seed = seed_values(run.data.metrics, "fewshot_acc")
        assert sorted(per_seed) == [0, 1]  # each seed's own accuracy, logged
        assert trial.metrics["fewshot_acc"] == pytest.approx(sum(per_seed.values()) / 2)
        assert "| 2-shot (measured; selected on validation) | 2-shot (paper; best test epoch) |" in table
        assert "- few-shot epoch: selected on validation (up to 4 samples per class" in table
        row = next(line for line in table.splitlines() if line.startswith(f"| {trial.name} |"))
        assert f"| {estimate(list(per_seed.values())).format()} |" in row


def test_pretrain_study(ray_session, toy_setup):
    base, clip = toy_setup
    work, config = study_config(
        base, clip, "pretrain", **{"sweep.cpus_per_trial": 0.01, "sweep.max_concurrent": 1}
    )
    outcome = run_and_report(pretrain.STUDY, config, resume=False, command="test", verbose=0)
    check_every_cell(pretrain.STUDY, work, outcome, len(pretrain.CELLS))
    assert {t.name for t in outcome.trials} == {c.name for c in pretrain.CELLS}
    client = MlflowClient(outcome.tracking_uri)
    for trial in outcome.trials:
        # The trial reports its own Ray Train run's best-val zero-shot and CLIP's before pre-training.
        run = client.get_run(child_run(client, outcome, trial.name).data.tags["pretrain_run"])
        assert trial.metrics["zeroshot_acc"] == run.data.metrics["best_test_acc"]
        before = [m.value for m in client.get_metric_history(run.info.run_id, "test_acc") if m.step == 0]
        assert trial.metrics["before_pretraining_acc"] == before[0]
        intra = pretrain.STUDY.cell(trial.name, config).overrides["pretrain.intra"]
        assert run.data.params["pretrain.intra"] == str(intra)
        # Only the run with the intra-modality loss has that loss and the balance s.
        assert ("loss_intra" in run.data.metrics) == intra and ("s" in run.data.metrics) == intra


def test_hpo_study(ray_session, toy_setup):
    base, clip = toy_setup
    work, config = study_config(base, clip, "hpo", **{"sweep.num_samples": 3, "fewshot.epochs": 4})
    outcome = run_and_report(hpo.STUDY, config, resume=False, command="test", verbose=0)
    check_every_cell(hpo.STUDY, work, outcome, 3)
    best = (work / "results" / "hpo_fewshot.best.yaml").read_text()
    assert "fewshot:" in best and "lr:" in best and "epochs:" in best
    report = (work / "results" / "hpo_fewshot.md").read_text()
    assert "Best trial (selection_acc" in report  # searched on validation, the default
    assert "selection top-1 (searched) (measured; selected on validation)" in report
    assert "(paper" not in report  # no published numbers for a search: no paper columns
    assert json.dumps(sorted(outcome.trials[0].params)) == json.dumps(
        ["fewshot.dropout", "fewshot.epochs", "fewshot.lr", "fewshot.weight_decay"]
    )
