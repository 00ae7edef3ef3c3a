"""Adapter training: cache on/off identical, seeded K-shot, mean/std, frozen encoders, learning, MLflow,
config errors, the verb's table."""

import argparse
import copy
import statistics

import pytest
import torch
from mlflow import MlflowClient

from clip2point.commands import fewshot as fewshot_verb
from clip2point.config import FewShotConfig, load_config
from clip2point.data import MODELNET10, build_dataset
from clip2point.engine.context import Experiment
from clip2point.engine.feature_cache import SplitFeatures
from clip2point.engine.fewshot import (
    FewShotResult,
    SeedResult,
    build_adapter,
    mean_std,
    predict,
    run_few_shot,
    select_train,
    train_adapter,
)
from clip2point.errors import ConfigError, InputError
from clip2point.models import AdapterSettings, encode_prompts
from clip2point.render import DepthRenderer, official_views
from tests.engine.fewshot_data import make_boxes
from tests.tiny_clip import SIZE, write_tiny_clip

RENDER = DepthRenderer(SIZE, footprint="square", dilation=2)
VIEWS = official_views(6)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_boxes(tmp_path_factory.mktemp("boxes"), train=3, test=1)


@pytest.fixture(scope="module")
def splits(data_root):
    return tuple(build_dataset("modelnet10", data_root, split, 96) for split in ("train", "test"))


def features(splits, encoders, cache_dir):
    return tuple(
        SplitFeatures(ds, encoders, RENDER, VIEWS, cache_dir=cache_dir, batch_size=8, progress=False)
        for ds in splits
    )


def train_once(bundle, splits, encoders, cache_dir, *, path="dual", epochs=3, lr=1e-3, seed=0):
    train, test = features(splits, encoders, cache_dir)
    config = FewShotConfig(adapter=AdapterSettings(path=path, fusion="gate" if path == "dual" else "none"))
    torch.manual_seed(seed)
    adapter = build_adapter(config, 6, bundle.embed_dim)
    text = encode_prompts(bundle.text, MODELNET10)
    indices = select_train(splits[0].labels, 2, seed, MODELNET10)
    result = train_adapter(
        adapter, train, test, text, MODELNET10, indices, epochs=epochs, batch_size=8, lr=lr,
        weight_decay=1e-4, seed=seed,
    )  # fmt: skip
    return result, adapter, predict(adapter, test, text, 8)


@pytest.mark.slow
def test_cached_and_live_training_identical_and_encoders_untouched(tiny_bundle, splits, tmp_path):
    depth = copy.deepcopy(tiny_bundle.visual)  # a "pre-trained" depth encoder other than CLIP's
    with torch.no_grad():
        depth.proj.add_(0.05 * torch.randn_like(depth.proj, generator=torch.Generator().manual_seed(1)))
    encoders = [depth, tiny_bundle.visual]
    before = [{k: v.clone() for k, v in e.state_dict().items()} for e in encoders]
    cached, cached_adapter, cached_logits = train_once(tiny_bundle, splits, encoders, tmp_path, epochs=2)
    live, live_adapter, live_logits = train_once(tiny_bundle, splits, encoders, None, epochs=2)
    assert torch.equal(cached_logits, live_logits)
    assert cached.history == live.history
    for (name, a), b in zip(
        cached_adapter.state_dict().items(), live_adapter.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    for encoder, state in zip(encoders, before, strict=True):  # the encoders ran every live epoch
        assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in state.items())
        assert all(p.grad is None for p in encoder.parameters())


def test_adapter_learns_and_loss_decreases(tiny_bundle, splits, tmp_path):
    encoder = tiny_bundle.visual
    torch.manual_seed(0)
    initial = build_adapter(FewShotConfig(), 6, tiny_bundle.embed_dim).state_dict()
    result, adapter, _ = train_once(tiny_bundle, splits, [encoder, encoder], tmp_path, epochs=8, lr=1e-2)
    changed = [k for k, v in adapter.state_dict().items() if not torch.equal(v, initial[k])]
    assert "gate" in changed and any(k.startswith("clip_adapter.") for k in changed)
    losses = [s.loss for s in result.history]
    assert losses[-1] < 0.9 * losses[0]
    assert [s.epoch for s in result.history] == list(range(1, 9))
    assert result.best == max(s.test_acc for s in result.history)
    assert result.history[result.best_epoch - 1].test_acc == result.best
    assert result.last == result.history[-1].test_acc == result.final.overall


def test_select_train_seeded(splits):
    labels = splits[0].labels
    a, b = select_train(labels, 2, 0, MODELNET10), select_train(labels, 2, 0, MODELNET10)
    assert torch.equal(a, b) and len(a) == 20
    assert torch.bincount(torch.as_tensor(labels)[a], minlength=10).tolist() == [2] * 10
    others = [select_train(labels, 2, s, MODELNET10) for s in range(1, 6)]
    assert any(not torch.equal(a, o) for o in others)
    assert torch.equal(select_train(labels, None, 0, MODELNET10), torch.arange(30))
    with pytest.raises(InputError, match=r"fewshot.shots=4: .*'bathtub'.*3 samples"):
        select_train(labels, 4, 0, MODELNET10)


def test_batches_cover_each_index_once_and_drop_a_trailing_single():
    from clip2point.engine.fewshot import _batches

    batches = _batches(70, 32, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [32, 32, 6]
    assert sorted(torch.cat(batches).tolist()) == list(range(70))
    again = _batches(70, 32, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    single = _batches(33, 32, torch.Generator().manual_seed(0))
    assert [len(b) for b in single] == [32]  # BatchNorm cannot train on one sample
    assert [len(b) for b in _batches(1, 32, torch.Generator())] == [1]


def test_mean_std_and_summary():
    assert mean_std([80.0, 82.0, 87.0]) == pytest.approx(
        (statistics.mean([80, 82, 87]), statistics.stdev([80, 82, 87]))
    )
    assert mean_std([70.0]) == (70.0, 0.0)
    with pytest.raises(ValueError, match="no values"):
        mean_std([])
    seeds = tuple(SeedResult(s, best, 1, last, (), None) for s, best, last in [(0, 90, 80), (1, 94, 84)])
    summary = FewShotResult(seeds)
    assert summary.n == 2
    assert summary.best_mean_std == pytest.approx((92.0, 2 * 2**0.5))
    assert summary.last_mean_std == pytest.approx((82.0, 2 * 2**0.5))


def test_build_adapter_switches_and_dropout(tiny_bundle):
    adapter = build_adapter(FewShotConfig(dropout=0.3), 6, 32)
    rates = {m.p for m in adapter.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.3}
    with pytest.raises(ConfigError, match="needs the dual path"):  # fusion still "gate": refused at load
        load_config(overrides={"fewshot.adapter.path": "single"})
    with pytest.raises(ConfigError, match="fewshot.batch_size"):
        load_config(overrides={"fewshot.batch_size": 1})


@pytest.fixture
def tracked_config(data_root, tmp_path):
    return load_config(
        overrides={
            "model.name": write_tiny_clip(tmp_path / "clip"), "model.pretrained": None, "data.root": str(data_root),
            "data.num_points": 96, "render.views": 6, "render.footprint": "square",
            "fewshot.shots": 2, "fewshot.epochs": 3, "fewshot.seeds": [0, 1], "fewshot.batch_size": 8,
            "fewshot.feature_cache": str(tmp_path / "cache"),
            "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "tracking.experiment": "fewshot-test",
        }
    )  # fmt: skip


@pytest.mark.slow
def test_run_logs_to_mlflow_and_reuses_cache(tracked_config, tmp_path):
    result = run_few_shot(Experiment(tracked_config), out_dir=tmp_path / "out", progress=False)
    assert [s.seed for s in result.seeds] == [0, 1]
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # train + test, one shared encoder
    client = MlflowClient(tracking_uri=tracked_config.tracking.uri)
    experiment = client.get_experiment_by_name("fewshot-test")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.info.run_name == "fewshot-modelnet10")
    children = {
        r.data.tags["seed"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert parent.info.status == "FINISHED" and set(children) == {"0", "1"}
    best_mean, best_std = result.best_mean_std
    assert parent.data.metrics["best_acc_mean"] == pytest.approx(best_mean)
    assert parent.data.metrics["best_acc_std"] == pytest.approx(best_std)
    assert parent.data.params["fewshot.shots"] == "2"
    for seed_result in result.seeds:
        child = children[str(seed_result.seed)]
        history = client.get_metric_history(child.info.run_id, "test_acc")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (s.epoch, pytest.approx(s.test_acc)) for s in seed_result.history
        ]
        assert len(client.get_metric_history(child.info.run_id, "loss")) == 3
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == [
            "config.yaml",
            f"confusion_seed{seed_result.seed}.png",
        ]
    assert "results.txt" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    again = run_few_shot(Experiment(tracked_config), out_dir=tmp_path / "out", track=False, progress=False)
    assert [s.history for s in again.seeds] == [s.history for s in result.seeds]


def test_verb_prints_table_and_reports_bad_config(tracked_config, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    fewshot_verb.add_arguments(parser)
    settings = {
        "model.name": tracked_config.model.name, "model.pretrained": tracked_config.model.pretrained,
        "data.root": tracked_config.data.root, "data.num_points": 96, "render.views": 6,
        "fewshot.shots": 2, "fewshot.epochs": 2, "fewshot.seeds": "[3]", "fewshot.batch_size": 8,
        "fewshot.feature_cache": tracked_config.fewshot.feature_cache,
    }  # fmt: skip

    def args(*extra: str) -> argparse.Namespace:
        overrides = [f"{k}={v}" for k, v in settings.items()] + list(extra)
        return parser.parse_args(["--no-track", "--out", str(tmp_path / "out")] + [
            part for o in overrides for part in ("-o", o)
        ])  # fmt: skip

    assert fewshot_verb.run(args()) == 0
    out = capsys.readouterr().out
    assert "2 shots per class, 2 epochs, adapter dual global-view gate (official)" in out
    assert "n = 1 seeds" in out and "\n     3  " in out
    assert (tmp_path / "out" / "confusion_seed3.png").is_file()
    with pytest.raises(InputError, match="fewshot.shots=5"):
        fewshot_verb.run(args("fewshot.shots=5"))
    with pytest.raises(ConfigError, match="fewshot.seeds is empty"):
        fewshot_verb.run(args("fewshot.seeds=[]"))
