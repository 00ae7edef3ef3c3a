"""Pre-training on a real local Ray cluster: MLflow holds every epoch once and the best checkpoint, a tie
keeps the earlier epoch, a run that cannot fit fails first. A run resumed from a checkpoint re-runs the lost
epoch exactly: tests/engine/test_pretrain_edges.py."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from clip2point import lease
from clip2point.engine.pretrain import run_pretraining
from clip2point.errors import ConfigError
from clip2point.models import load_clip, load_module
from tests.engine.pretrain_fixtures import tiny_config_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_pretrain_logs_every_epoch_once_and_a_tie_keeps_the_earlier_epoch(ray_session, tmp_path):
    # A learning rate too small to move a float32 weight: every epoch's encoder, and val top-1, are equal.
    config = tiny_config_for(tmp_path, **{"pretrain.lr": 1e-30, "pretrain.eta_min": 0.0})
    result = run_pretraining(config, "tie", log=lambda _: None)
    client = MlflowClient(config.tracking.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["pretrain.epochs"] == "2"
    assert [s for s, _ in history(client, result.run_id, "loss_total")] == [1, 2]
    assert [s for s, _ in history(client, result.run_id, "val_acc")] == [0, 1, 2]  # 0: before pre-training
    for key in ("loss_intra", "loss_cross", "s", "lr", "test_acc"):
        assert len(history(client, result.run_id, key)) == (3 if key == "test_acc" else 2), key
    vals = [v for s, v in history(client, result.run_id, "val_acc") if s >= 1]
    assert len(vals) == 2 and vals[0] == vals[1]
    assert result.epochs == 2 and result.best_epoch == 1 and result.best_val_acc == vals[0]
    artefacts = [f.path for f in client.list_artifacts(result.run_id, "checkpoints")]
    assert artefacts == ["checkpoints/best_depth_encoder.safetensors"]
    encoder = load_clip(config.model.name, config.model.pretrained).depth_encoder()
    assert load_module(encoder, result.best_file)["epoch"] == "1"

    with pytest.raises(ConfigError, match="already exists.*--resume"):
        run_pretraining(config, "tie", log=lambda _: None)
    with pytest.raises(ConfigError, match="no run named 'nothing'"):
        run_pretraining(config, "nothing", resume=True, log=lambda _: None)


def test_a_run_that_cannot_fit_fails_before_anything_starts(ray_session, tmp_path):
    """The sweeps' resource-fit check: 3 workers of 1 CPU on 2 CPUs would wait for resources forever."""
    config = tiny_config_for(tmp_path, **{"pretrain.num_workers": 3})
    with pytest.raises(
        ConfigError,
        match=r"pre-training: the run needs 3 CPUs, 0 GPUs \(3 Ray Train workers\), but the cluster has "
        r"\(its nodes now\) 2 CPUs, 0 GPUs; allowed: fewer or smaller workers \(pretrain.num_workers",
    ):
        run_pretraining(config, "too-big", log=lambda _: None)
    with pytest.raises(ConfigError, match=r"a Ray Train worker needs 1 CPU, 1 GPU on one node, but no node"):
        run_pretraining(tiny_config_for(tmp_path, **{"pretrain.use_gpu": True}), "gpu", log=lambda _: None)
    left = {p.name for p in (tmp_path / "runs" / "pretrain").rglob("*") if p.is_file()}
    assert left <= set(lease.FILES)  # nothing of a run (the lease's lock file may stay), no MLflow run
    assert MlflowClient(config.tracking.uri).search_runs(["0"]) == []
