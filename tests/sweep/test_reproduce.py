"""The reproduction workflow on a tiny toy world: every stage, interrupted once and continued, each stage
finished exactly once, nested under one MLflow parent, and results/paper.md with every table."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from clip2point.config import load_config
from clip2point.stats import estimate, seed_values
from clip2point.sweep import reproduce
from clip2point.sweep.reproduce import STAGES, Layers, run_reproduction
from clip2point.sweep.studies import adapter
from tests.toy_setup import toy_overrides

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def layers(toy_world, tiny_clip_dir, tmp_path):
    overrides = toy_overrides(toy_world, tiny_clip_dir, tmp_path) | {
        "sweep.datasets": ["modelnet10"], "sweep.num_samples": 2,
    }  # fmt: skip
    return Layers(overrides=overrides)


def test_interrupted_reproduction_continues_and_writes_every_table(
    ray_session, layers, tmp_path, monkeypatch
):
    calls: list[tuple[str, bool]] = []
    real = reproduce.run_and_report

    def interrupted_at_table4(study, config, *, resume, **kwargs):
        calls.append((study.name, resume))
        if study.name == "ablation_adapter" and not resume:
            raise KeyboardInterrupt  # the user's Ctrl-C in the middle of the workflow
        return real(study, config, resume=resume, **kwargs)

    monkeypatch.setattr(reproduce, "run_and_report", interrupted_at_table4)
    with pytest.raises(KeyboardInterrupt):
        run_reproduction(layers, command="test")
    done_first = [name for name, _ in calls]
    assert done_first == [STAGES[i].name for i in range(5)]  # pretrain, table1, table2, table3, table4
    calls.clear()
    paper = run_reproduction(layers, command="test")
    # The second call runs only what had not finished: table4 resumed, then table5 and the search.
    assert calls == [("ablation_adapter", True), ("ablation_rendering", False), ("hpo_fewshot", False)]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("clip2point").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "reproduction"]
    assert parent.info.status == "FINISHED"
    sweeps = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["study"] for r in sweeps) == sorted(study.name for study in STAGES)
    assert all(r.info.status == "FINISHED" for r in sweeps)  # each stage's sweep once, finished
    assert {f"stage.{s.stage}" for s in STAGES} <= set(parent.data.tags)

    text = paper.read_text()
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Table 1: zero-shot classification", "## Table 2 and the K-shot curve",
        "## Table 3: fully supervised", "## Table 4: the Gated Dual-Path Adapter's parts",
        "## Table 5: depth rendering", "## The intra-modality loss (Sec. 5.6)",
        "## Adapter hyper-parameter search",
    ]  # fmt: skip
    assert f"MLflow parent run `{parent.info.run_id}`" in text  # the parent both calls used
    assert "not run yet" not in text
    assert "95% CI" in text and "vs dual, global-view, gate" in text  # Table 4's paired differences
    assert "vs ModelNet10, 2-shot, without pre-training" in text  # Table 2: with vs without, per K
    assert "Protocol (the epoch behind each number): selected on validation" in text
    beside = "Beside it, the authors' protocol (one run, labelled so): best test epoch, as the paper; one run"
    assert [h for h in text.split("\n## ") if beside in h] == [
        h for h in text.split("\n## ") if h.startswith(("Table 2", "Table 4"))
    ]  # the toy settings run it for Tables 2 and 4 (Table 5, the main job, without)
    search = text.split("## Adapter hyper-parameter search")[1]
    assert "| setting | selection top-1 (searched) | test top-1 at the selected epoch |" in search
    assert "| lr=" in search and "paper" not in search  # trials named by their settings; nothing published
    table5 = text.split("## Table 5")[1].split("\n## ")[0]
    assert "| difference (2-shot) |" in table5  # paired over seeds on the K-shot column, not zero-shot
    assert "(n=1) vs ModelNet10, CLIP |" in text  # a zero-shot difference: one number, no spread
    # A study whose rows set their own dataset names them all in its header.
    table1 = (tmp_path / "results" / "table1_zeroshot.md").read_text()
    assert "- datasets: `modelnet10`, `shapenet55_pretrain` (as each row says) under" in table1
    assert "- dataset: `modelnet10` under" in (tmp_path / "results" / "ablation_rendering.md").read_text()
    # The later stages used the encoder of the pre-training run with the intra-modality loss.
    state = reproduce.State.load(str(tmp_path / "storage" / "reproduce"), fresh=False)
    encoder = state.data["stages"]["pretrain"]["encoder"]
    by_study = {r.data.tags["study"]: r for r in sweeps}
    assert by_study["ablation_adapter"].data.params["model.depth_encoder"] == encoder
    assert Path(encoder).is_file()

    check_pretraining_stage(client, trials(client, by_study["ablation_pretrain"]))
    check_adapter_stage(
        trials(client, by_study["ablation_adapter"]), encoder, tmp_path / "results" / "ablation_adapter.md"
    )
    check_search_stage(trials(client, by_study["hpo_fewshot"]), tmp_path / "results")


def trials(client: MlflowClient, sweep) -> dict:
    """A stage's trials (its sweep's nested runs), by cell name."""
    runs = client.search_runs([sweep.info.experiment_id], f"tags.mlflow.parentRunId = '{sweep.info.run_id}'")
    return {run.data.tags["cell"]: run for run in runs}


def check_pretraining_stage(client: MlflowClient, runs: dict) -> None:
    """Each trial reports its own Ray Train run's best-val zero-shot and CLIP's before pre-training, and only
    the run with the intra-modality loss has that loss and the balance s."""
    assert sorted(runs) == ["cross-modality only", "with intra-modality loss"]
    for name, trial in runs.items():
        assert trial.info.status == "FINISHED"
        run = client.get_run(trial.data.tags["pretrain_run"])
        assert trial.data.metrics["zeroshot_acc"] == run.data.metrics["best_test_acc"]
        before = [m.value for m in client.get_metric_history(run.info.run_id, "test_acc") if m.step == 0]
        assert trial.data.metrics["before_pretraining_acc"] == before[0]
        intra = name == "with intra-modality loss"
        assert run.data.params["pretrain.intra"] == str(intra)
        assert ("loss_intra" in run.data.metrics) == intra and ("s" in run.data.metrics) == intra


def check_adapter_stage(runs: dict, encoder: str, table: Path) -> None:
    """Every Table 4 cell ran its own switches on the pre-trained encoder (the both-CLIP cell on CLIP's),
    logged each seed's accuracy, and the table shows their estimate."""
    text = table.read_text()
    assert (
        "| 2-shot (measured; selected on validation) | 2-shot (measured; the authors' protocol) "
        "| 2-shot (paper; best test epoch) |" in text
    )  # the toy setting runs the authors' protocol beside ours (sweeps/ablation_adapter.yaml)
    assert "- few-shot epoch: selected on validation (up to 4 samples per class" in text
    assert sorted(runs) == sorted(cell.name for cell in adapter.CELLS)
    for cell in adapter.CELLS:
        run = runs[cell.name]
        assert run.info.status == "FINISHED"
        for key in ("path", "aggregator", "fusion"):
            assert run.data.params[f"fewshot.adapter.{key}"] == cell.overrides[f"fewshot.adapter.{key}"]
        assert (
            run.data.params["fewshot.adapter.variant"] == "official"
        )  # the authors' forms, both aggregators
        both_clip = "model.depth_encoder" in cell.overrides
        assert run.data.params["model.depth_encoder"] == ("None" if both_clip else encoder)
        per_seed = seed_values(run.data.metrics, "fewshot_acc")
        assert sorted(per_seed) == [0, 1]
        assert run.data.metrics["fewshot_acc"] == pytest.approx(sum(per_seed.values()) / 2)
        row = next(line for line in text.splitlines() if line.startswith(f"| {cell.name} |"))
        authors = run.data.metrics["fewshot_acc_authors"]  # one run: seed 0's best test epoch
        assert f"| {estimate(list(per_seed.values())).format()} | {authors:.2f} |" in row


def check_search_stage(runs: dict, results: Path) -> None:
    """The search sampled its trials' learning rates, searched on validation and saved the best trial's
    settings as a config layer that loads."""
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs.values())
    rates = {float(run.data.params["fewshot.lr"]) for run in runs.values()}
    assert len(rates) == 2  # each trial its own sample
    assert "Best trial (selection_acc" in (results / "hpo_fewshot.md").read_text()
    assert load_config(results / "hpo_fewshot.best.yaml").fewshot.lr in rates
