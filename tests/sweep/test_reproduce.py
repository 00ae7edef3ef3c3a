"""The reproduction workflow on a tiny toy world: every stage, interrupted once and continued, each stage
finished exactly once, nested under one MLflow parent, and results/paper.md with every table."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from clip2point.sweep import reproduce
from clip2point.sweep.reproduce import STAGES, Layers, run_reproduction
from clip2point.toy import build_toy_world
from tests.tiny_clip import write_tiny_clip

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def layers(tmp_path):
    build_toy_world(tmp_path / "toy", seed=0, size="small", progress=False)
    overrides = {
        "model.name": write_tiny_clip(tmp_path / "clip"), "model.pretrained": None,
        "data.root": str(tmp_path / "toy"), "data.num_points": 64, "render.views": 6,
        "fewshot.shots": 2, "fewshot.seeds": [0, 1], "fewshot.epochs": 2, "fewshot.batch_size": 8,
        "fewshot.feature_cache": str(tmp_path / "features"),
        "pretrain.epochs": 1, "pretrain.batch_size": 4, "pretrain.cpus_per_worker": 1,
        "pretrain.max_failures": 0, "sweep.datasets": ["modelnet10"], "sweep.num_samples": 2,
        "storage": str(tmp_path / "storage"), "sweep.results_dir": str(tmp_path / "results"),
        "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }  # fmt: skip
    return Layers(ROOT / "sweeps", overrides=overrides)


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
    assert done_first == [STAGES[i].study for i in range(5)]  # pretrain, table5, table1, table2, table4
    calls.clear()
    paper = run_reproduction(layers, command="test")
    # The second call runs only what had not finished: table4 resumed, then table3 and the search.
    assert calls == [("ablation_adapter", True), ("table3_supervised", False), ("hpo_fewshot", False)]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("clip2point").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "reproduction"]
    assert parent.info.status == "FINISHED"
    sweeps = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["study"] for r in sweeps) == sorted(stage.study for stage in STAGES)
    assert all(r.info.status == "FINISHED" for r in sweeps)  # each stage's sweep once, finished
    assert {f"stage.{s.key}" for s in STAGES} <= set(parent.data.tags)

    text = paper.read_text()
    for heading in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "intra-modality loss", "search"):
        assert f"## {heading}" in text or heading in text, heading
    assert "not run yet" not in text
    assert "95% CI" in text and "vs dual, global-view, gate" in text  # Table 4's paired differences
    assert "vs ModelNet10, 2-shot, without pre-training" in text  # Table 2: with vs without, per K
    assert "Protocol (the epoch behind each number): selected on validation" in text
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
    table4 = next(r for r in sweeps if r.data.tags["study"] == "ablation_adapter")
    assert table4.data.params["model.depth_encoder"] == encoder and Path(encoder).is_file()
