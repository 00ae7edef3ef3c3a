"""Adapter training: cache on/off identical, seeded K-shot, mean/std, frozen encoders, learning, MLflow,
config errors, the verb's table."""

import argparse
import copy

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from clip2point.commands import fewshot as fewshot_verb
from clip2point.config import FewShotConfig, load_config
from clip2point.data import MODELNET10, build_dataset, select_k_shot, select_validation
from clip2point.engine.context import Experiment
from clip2point.engine.feature_cache import SplitFeatures
from clip2point.engine.fewshot import (
    FewShotResult,
    SeedResult,
    build_adapter,
    predict,
    run_few_shot,
    select_samples,
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
    assert result.selection == "test" and result.val_acc is None
    assert all(s.val_acc is None and s.test_acc is not None for s in result.history)
    assert result.test_acc == max(s.test_acc for s in result.history)
    assert result.history[result.epoch - 1].test_acc == result.test_acc == result.accuracy.overall
    assert result.epoch == min(s.epoch for s in result.history if s.test_acc == result.test_acc)
    assert result.last_acc == result.history[-1].test_acc


class CountingFeatures:
    """Real split features that count how often they are read (how often the test split is looked at)."""

    def __init__(self, inner: SplitFeatures):
        self.inner, self.labels, self.calls = inner, inner.labels, 0

    def __len__(self) -> int:
        return len(self.inner)

    def __call__(self, indices):
        self.calls += 1
        return self.inner(indices)


def test_val_selection_picks_the_best_validation_epoch_and_tests_once(tiny_bundle, splits, tmp_path):
    encoder = tiny_bundle.visual
    train, test = features(splits, [encoder, encoder], tmp_path)
    config = FewShotConfig(shots=2, selection="val", val_shots=4)
    train_idx, val_idx = select_samples(splits[0].labels, config, 0, MODELNET10)
    # The K shots are those of the paper's protocol; validation takes the one remaining box per class.
    assert torch.equal(train_idx, select_train(splits[0].labels, 2, 0, MODELNET10))
    assert len(val_idx) == 10 and not set(val_idx.tolist()) & set(train_idx.tolist())
    assert sorted(splits[0].labels[val_idx].tolist()) == list(range(10))
    torch.manual_seed(0)
    adapter = build_adapter(config, 6, tiny_bundle.embed_dim)
    text = encode_prompts(tiny_bundle.text, MODELNET10)
    counted, snapshots = CountingFeatures(test), {}

    def snapshot(stats) -> None:
        snapshots[stats.epoch] = copy.deepcopy(adapter.state_dict())

    result = train_adapter(
        adapter, train, counted, text, MODELNET10, train_idx, epochs=6, batch_size=8, lr=1e-2,
        weight_decay=1e-4, seed=0, val_indices=val_idx, on_epoch=snapshot,
    )  # fmt: skip
    assert counted.calls == 2  # one pass over the 10 test samples in batches of 8, after training
    assert result.selection == "val" and result.last_acc is None
    assert all(s.test_acc is None and s.val_acc is not None for s in result.history)
    best = max(s.val_acc for s in result.history)
    assert (
        result.epoch == min(s.epoch for s in result.history if s.val_acc == best) and result.val_acc == best
    )
    for key, value in adapter.state_dict().items():  # the adapter ends as it was at the selected epoch
        assert torch.equal(value, snapshots[result.epoch][key]), key
    assert result.gate == snapshots[result.epoch]["gate"].item() != 1.0  # the gate learned from its start, 1
    by_hand = predict(adapter, test, text, 8).argmax(1).cpu()
    assert result.test_acc == pytest.approx(100.0 * float((by_hand == test.labels).float().mean()))
    val_logits = predict(adapter, train, text, 8, val_idx).argmax(1).cpu()
    assert result.val_acc == pytest.approx(
        100.0 * float((val_logits == train.labels[val_idx]).float().mean())
    )


def test_validation_split_sizes_by_hand():
    labels = np.repeat(np.arange(3), [10, 4, 1])  # 10, 4 and 1 samples
    full_train, full_val = select_validation(labels, np.arange(15), 0, fraction=0.25)
    # round(0.25 * n) of each class, at least 1 and at most n - 1: 2 (of 10), 1 (of 4), 0 (of 1)
    assert np.bincount(labels[full_val], minlength=3).tolist() == [2, 1, 0]
    assert sorted([*full_train, *full_val]) == list(range(15)) and not set(full_train) & set(full_val)
    shots = select_k_shot(labels[:14], 3, seed=0)
    kept, held = select_validation(labels[:14], shots, 0, per_class=4)
    assert np.array_equal(kept, shots)
    assert np.bincount(labels[held], minlength=2).tolist() == [4, 1]  # 4 of the 7 left, the 1 left
    again = select_validation(labels[:14], shots, 0, per_class=4)[1]
    assert np.array_equal(held, again)
    with pytest.raises(InputError, match="no sample of the train split is left beside the K shots"):
        select_validation(labels[:14], np.arange(14), 0, per_class=4)
    with pytest.raises(InputError, match=r"fewshot.selection='val': .*use selection 'test'"):
        select_samples(np.repeat([0, 1], 4), FewShotConfig(shots=4, selection="val"), 0, ("a", "b"))
    assert FewShotConfig(shots=None, val_fraction=0.25).protocol(detail=True) == (
        "selected on validation (25% of each class of the train split, held out); test evaluated once, "
        "at the selected epoch"
    )
    assert FewShotConfig(selection="test").protocol() == "best test epoch, as the paper"


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


def test_summary_over_seeds():
    seeds = tuple(
        SeedResult(s, "test", 1, best, None, last, (), None) for s, best, last in [(0, 90, 80), (1, 94, 84)]
    )
    summary = FewShotResult(seeds, "best test epoch, as the paper")
    assert summary.n == 2
    assert (summary.test.mean, summary.test.std, summary.test.n) == pytest.approx((92.0, 2 * 2**0.5, 2))
    assert (summary.last.mean, summary.last.std) == pytest.approx((82.0, 2 * 2**0.5))
    assert summary.val is None
    assert summary.metrics("acc") == {  # each seed kept beside the mean (intervals, paired differences)
        "acc": 92.0, "acc/seed0": 90, "acc/seed1": 94, "acc_last": 82.0, "acc_last/seed0": 80, "acc_last/seed1": 84,
        "acc_epoch": 1.0, "acc_epoch/seed0": 1, "acc_epoch/seed1": 1,
    }  # fmt: skip
    validated = FewShotResult(
        tuple(
            SeedResult(s, "val", e, t, v, None, (), None, g)
            for s, e, t, v, g in [(0, 3, 90, 70, 0.5), (1, 6, 92, 74, 1.5)]
        ),
        "selected on validation",
    )
    assert (
        validated.val.mean == 72.0
        and validated.val.std == pytest.approx(2 * 2**0.5)
        and validated.last is None
    )
    assert validated.metrics("acc") == {
        "acc": 91.0, "acc/seed0": 90, "acc/seed1": 92, "acc_val": 72.0, "acc_val/seed0": 70, "acc_val/seed1": 74,
        "acc_epoch": 4.5, "acc_epoch/seed0": 3, "acc_epoch/seed1": 6,
        "acc_gate": 1.0, "acc_gate/seed0": 0.5, "acc_gate/seed1": 1.5,
    }  # fmt: skip


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
    assert parent.data.metrics["fewshot_acc"] == pytest.approx(result.test.mean)
    assert parent.data.metrics["fewshot_acc/seed1"] == pytest.approx(result.seeds[1].test_acc)
    assert parent.data.metrics["fewshot_acc_val"] == pytest.approx(result.val.mean)
    assert "fewshot_acc_last" not in parent.data.metrics  # test is looked at once per seed under "val"
    assert parent.data.params["fewshot.shots"] == "2" and parent.data.params["fewshot.selection"] == "val"
    assert parent.data.tags["protocol"] == (
        "selected on validation (up to 4 samples per class from the train split, beside the 2 shots); "
        "test evaluated once, at the selected epoch"
    )
    for seed_result in result.seeds:
        child = children[str(seed_result.seed)]
        history = client.get_metric_history(child.info.run_id, "val_acc")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (s.epoch, pytest.approx(s.val_acc)) for s in seed_result.history
        ]
        assert client.get_metric_history(child.info.run_id, "test_acc") == []
        assert child.data.metrics["selected_test_acc"] == pytest.approx(seed_result.test_acc)
        assert child.data.metrics["selected_epoch"] == seed_result.epoch
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
