"""The authors' few-shot protocol: clouds sampled anew every epoch (seeded, reproducible), one feature-cache
entry per epoch for them (bit-identical to live features), mesh datasets only, and one run's best test
epoch."""

import dataclasses
import threading
import time

import pytest
import torch

from clip2point.config import load_config
from clip2point.data import build_dataset
from clip2point.data.datasets import _finish
from clip2point.data.files import read_off
from clip2point.data.sampling import sample_surface
from clip2point.engine.context import Experiment
from clip2point.engine.feature_cache import ChosenSamples, SplitFeatures, feature_key
from clip2point.engine.fewshot import chosen_samples, run_few_shot
from clip2point.errors import ConfigError
from clip2point.paths import locked
from clip2point.render import DepthRenderer, official_views
from clip2point.schema import with_overrides
from tests.engine.fewshot_data import make_boxes
from tests.tiny_clip import SIZE, write_tiny_clip


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_boxes(tmp_path_factory.mktemp("boxes"), train=2, test=1)


def test_clouds_change_every_epoch_and_follow_the_seed(root):
    ds = build_dataset("modelnet10", root, "train", 64, seed=3, resample=True)
    clouds = []
    for epoch in (1, 2, 3):
        ds.set_epoch(epoch)
        clouds.append(ds[0]["points"])
    assert not any(torch.equal(clouds[i], clouds[j]) for i, j in ((0, 1), (0, 2), (1, 2)))
    vertices, faces = read_off(ds.sources[0])  # epoch 2 by hand: the seed (seed, epoch, record, 3)
    by_hand = sample_surface(vertices, faces, 64, (3, 2, 0, 3))
    torch.testing.assert_close(clouds[1], torch.from_numpy(_finish(torch.from_numpy(by_hand), align=True)))
    again = build_dataset("modelnet10", root, "train", 64, seed=3, resample=True)
    again.set_epoch(2)
    assert torch.equal(again[0]["points"], clouds[1])  # reproducible from the seed
    other = build_dataset("modelnet10", root, "train", 64, seed=4, resample=True)
    other.set_epoch(2)
    assert not torch.equal(other[0]["points"], clouds[1])
    fixed = build_dataset("modelnet10", root, "train", 64, seed=3)
    first = fixed[0]["points"]
    fixed.set_epoch(2)
    assert torch.equal(fixed[0]["points"], first)  # without resample the clouds stay


def test_resampled_clouds_have_one_cache_entry_per_epoch_equal_to_live_features(root, tiny_bundle, tmp_path):
    render, views, cache = DepthRenderer(SIZE), official_views(6), tmp_path / "cache"
    ds = build_dataset("modelnet10", root, "test", 64, resample=True)
    cached = SplitFeatures(
        ds, [tiny_bundle.visual], render, views, cache_dir=cache, batch_size=32, progress=False
    )
    live = SplitFeatures(
        ds, [tiny_bundle.visual], render, views, cache_dir=None, batch_size=32, progress=False
    )
    assert cached.entries is None  # nothing is computed before the first epoch's first call
    every = torch.arange(len(ds))
    per_epoch = []
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        first = cached(every[:4])[0]  # the whole split is stored at the epoch's first call
        assert not cached.entries[0].hit and torch.equal(first, cached(every)[0][:4])
        assert torch.equal(cached(every)[0], live(every)[0])  # bit for bit the live features
        per_epoch.append(cached(every)[0])
    assert not torch.equal(per_epoch[0], per_epoch[1])  # the clouds, so the features, change
    assert len(list(cache.glob("*.safetensors"))) == 2  # one entry per epoch
    again = build_dataset("modelnet10", root, "test", 64, resample=True)  # another cell of the study
    shared = SplitFeatures(
        again, [tiny_bundle.visual], render, views, cache_dir=cache, batch_size=32, progress=False
    )
    again.set_epoch(1)
    assert torch.equal(shared(every)[0], per_epoch[0]) and shared.entries[0].hit  # read, not recomputed
    fixed = build_dataset("modelnet10", root, "test", 64)
    assert SplitFeatures(
        fixed, [tiny_bundle.visual], render, views, cache_dir=cache, batch_size=32, progress=False
    ).entries
    assert len(list(cache.glob("*.safetensors"))) == 3


def test_chosen_samples_are_the_seeds_draws_with_their_own_per_epoch_entries(root, tiny_bundle, tmp_path):
    ds = build_dataset("modelnet10", root, "train", 64, resample=True)
    samples = {0: (torch.tensor([7, 2]), torch.tensor([5])), 1: (torch.tensor([2, 9]), None)}
    chosen, remapped = chosen_samples(ds, samples)
    assert chosen.indices.tolist() == [2, 5, 7, 9]  # every seed's train and val samples, once, sorted
    assert [t.tolist() for t in remapped[0]] == [[2, 0], [1]] and remapped[1][0].tolist() == [0, 3]
    assert remapped[1][1] is None
    assert chosen.labels.tolist() == ds.labels[[2, 5, 7, 9]].tolist()
    render, views, cache = DepthRenderer(SIZE), official_views(6), tmp_path / "cache"
    features = SplitFeatures(
        chosen, [tiny_bundle.visual], render, views, cache_dir=cache, batch_size=32, progress=False
    )
    live = SplitFeatures(
        ds, [tiny_bundle.visual], render, views, cache_dir=None, batch_size=32, progress=False
    )
    ds.set_epoch(2)  # the chosen samples follow their parent's epoch
    assert chosen.epoch == 2 and chosen.fingerprint() != ChosenSamples(ds, [2, 5, 7]).fingerprint()
    assert torch.equal(features(remapped[0][0])[0], live(samples[0][0])[0])  # the same samples, bit for bit
    ds.set_epoch(3)
    assert torch.equal(features(remapped[1][0])[0], live(samples[1][0])[0])
    assert len(list(cache.glob("*.safetensors"))) == 2  # one entry of the 4 samples per epoch


def test_while_another_cell_builds_this_epoch_the_next_is_built_meanwhile(root, tiny_bundle, tmp_path):
    render, views, cache = DepthRenderer(SIZE), official_views(6), tmp_path / "cache"
    ds = build_dataset("modelnet10", root, "test", 64, resample=True)
    ds.set_epoch(1)
    lock = cache / f"{feature_key(tiny_bundle.visual, render, views, ds, 'cpu')}.lock"
    held = threading.Event()

    def other_cell() -> None:  # holds epoch 1's lock until epoch 2's entry is on disk
        with locked(lock):
            held.set()
            deadline = time.monotonic() + 120
            while not list(cache.glob("*.safetensors")) and time.monotonic() < deadline:
                time.sleep(0.05)

    thread = threading.Thread(target=other_cell)
    thread.start()
    held.wait()
    cached = SplitFeatures(
        ds, [tiny_bundle.visual], render, views, cache_dir=cache, batch_size=32, progress=False
    )
    every = torch.arange(len(ds))
    first = cached(every)[0]  # builds epoch 2's entry, then (the lock free) epoch 1's
    thread.join()
    live = SplitFeatures(
        ds, [tiny_bundle.visual], render, views, cache_dir=None, batch_size=32, progress=False
    )
    assert ds.epoch == 1 and torch.equal(first, live(every)[0])
    assert len(list(cache.glob("*.safetensors"))) == 2
    ds.set_epoch(2)
    assert torch.equal(cached(every)[0], live(every)[0]) and cached.entries[0].hit  # built ahead


@pytest.mark.slow
def test_authors_protocol_run_is_one_seed_resampled_and_reproducible(root, tmp_path):
    config = load_config(
        overrides={
            "model.name": write_tiny_clip(tmp_path / "clip"), "model.pretrained": None, "data.root": str(root),
            "data.num_points": 64, "render.views": 6, "fewshot.shots": 1, "fewshot.epochs": 2,
            "fewshot.seeds": [5, 6], "fewshot.batch_size": 4, "fewshot.feature_cache": str(tmp_path / "cache"),
        }
    )  # fmt: skip
    authors = config.fewshot.authors()
    assert (authors.seeds, authors.selection, authors.resample) == ((5,), "test", True)
    assert (
        authors.protocol() == "best test epoch, as the paper; one run (seed 5); clouds re-sampled every epoch"
    )
    config = dataclasses.replace(config, fewshot=authors)
    experiment = Experiment(config, "cpu")
    result = run_few_shot(experiment, out_dir=tmp_path / "out", track=False, progress=False)
    assert [s.seed for s in result.seeds] == [5] and result.protocol == authors.protocol()
    assert experiment.dataset("train", resample=True).epoch == 2  # moved to each epoch's clouds
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 4  # per epoch: test split, the K shots
    again = run_few_shot(Experiment(config, "cpu"), out_dir=tmp_path / "out", track=False, progress=False)
    assert again.seeds[0].history == result.seeds[0].history  # from the cache
    live = with_overrides(config, {"fewshot.feature_cache": None})
    uncached = run_few_shot(Experiment(live, "cpu"), out_dir=tmp_path / "out", track=False, progress=False)
    assert uncached.seeds[0].history == result.seeds[0].history  # every feature computed live: the same
    assert result.seeds[0].test_acc == max(s.test_acc for s in result.seeds[0].history)
    scan = Experiment(with_overrides(config, {"data.dataset": "scanobjectnn_obj_only"}), "cpu")
    with pytest.raises(ConfigError, match=r"fewshot.resample: dataset 'scanobjectnn_obj_only' has fixed"):
        scan.dataset("test", resample=True)
