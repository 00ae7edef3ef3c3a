"""Feature cache: hit/miss, invalidation by every fingerprint input, exact equality with live features,
corrupt entries, concurrent builders, the cache folder."""

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from clip2point.data import build_dataset
from clip2point.engine.feature_cache import SplitFeatures, encoder_digest, feature_key, load_or_extract
from clip2point.errors import ConfigError
from clip2point.render import DepthRenderer, ImageNorm, official_views
from tests.engine.fewshot_data import make_boxes
from tests.tiny_clip import SIZE

RENDER = DepthRenderer(SIZE, footprint="square", dilation=2)


def rerender(renderer: DepthRenderer, **changes) -> DepthRenderer:
    """The same renderer with settings fields changed."""
    return DepthRenderer(renderer.image_size, renderer.settings, norm=renderer.norm, **changes)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_boxes(tmp_path_factory.mktemp("boxes"), train=1, test=1)


def dataset(root, split="test", num_points=96, **options):
    return build_dataset("modelnet10", root, split, num_points, **options)


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def test_miss_then_hit_and_rows_equal_single_sample_encoding(tiny_bundle, data_root, tmp_path):
    ds, views = dataset(data_root), official_views(6)
    first = load_or_extract(
        tiny_bundle.visual, RENDER, ds, views, cache_dir=tmp_path, batch_size=4, progress=False
    )
    assert not first.hit and first.path is not None and entries(tmp_path) == [first.path]
    second = load_or_extract(
        tiny_bundle.visual, RENDER, ds, views, cache_dir=tmp_path, batch_size=3, progress=False
    )
    assert second.hit and second.path == first.path
    assert torch.equal(second.features, first.features) and torch.equal(second.labels, first.labels)
    assert first.features.shape == (10, 6, tiny_bundle.embed_dim)
    assert first.labels.tolist() == list(range(10))
    # Independent reference: each sample rendered alone, its 6 views encoded in one call.
    for i in (0, 7):
        with torch.no_grad():
            alone = tiny_bundle.visual(RENDER(ds[i]["points"].unsqueeze(0), *views)[0])
        assert torch.equal(first.features[i], alone)


def test_every_fingerprint_input_invalidates(tiny_bundle, data_root, tmp_path):
    views = official_views(6)
    base_ds = dataset(data_root)

    def run(encoder=tiny_bundle.visual, render=RENDER, ds=base_ds, v=views):
        return load_or_extract(encoder, render, ds, v, cache_dir=tmp_path, batch_size=5, progress=False)

    base = run()
    assert not base.hit
    changed_encoder = copy.deepcopy(tiny_bundle.visual)
    with torch.no_grad():
        changed_encoder.proj[0, 0] += 1e-3  # one weight
    variants = {
        "encoder weights": dict(encoder=changed_encoder),
        "dilation": dict(render=rerender(RENDER, dilation=1)),
        "depth mode": dict(render=rerender(RENDER, depth="weighted")),
        "normalisation": dict(
            render=DepthRenderer(SIZE, RENDER.settings, norm=ImageNorm((0.5,) * 3, (0.5,) * 3))
        ),
        "views": dict(v=official_views(10)),
        "num_points": dict(ds=dataset(data_root, num_points=64)),
        "sampling seed": dict(ds=dataset(data_root, seed=1)),
        "alignment": dict(ds=dataset(data_root, align=False)),
        "split": dict(ds=dataset(data_root, split="train")),
    }
    for what, change in variants.items():
        result = run(**change)
        assert not result.hit, what
        assert result.path != base.path, what
    assert len(entries(tmp_path)) == 1 + len(variants)
    assert run().hit  # the base entry is still there
    assert not torch.equal(run(encoder=changed_encoder).features, base.features)


def test_source_file_change_invalidates(tiny_bundle, tmp_path):
    root = make_boxes(tmp_path / "data", train=0, test=1)
    views, cache = official_views(6), tmp_path / "cache"
    key = feature_key(tiny_bundle.visual, RENDER, views, dataset(root), "cpu")
    off = root / "ModelNet10" / "chair" / "test" / "chair_0000.off"
    os.utime(off, ns=(off.stat().st_atime_ns, off.stat().st_mtime_ns + 10**9))
    assert feature_key(tiny_bundle.visual, RENDER, views, dataset(root), "cpu") != key
    assert load_or_extract(
        tiny_bundle.visual, RENDER, dataset(root), views, cache_dir=cache, progress=False
    ).path
    assert not (cache / f"{key}.safetensors").exists()


def test_key_holds_the_precision_the_encoder_computes_in(tiny_bundle, tmp_path):
    root = make_boxes(tmp_path / "data", train=0, test=1)
    views, ds = official_views(6), dataset(root)

    def key(device: str, precision: str) -> str:
        return feature_key(tiny_bundle.visual, RENDER, views, ds, device, precision)

    # On the CPU every setting computes in float32; on CUDA bf16 autocasts, tf32 uses TF32 matmuls.
    assert key("cpu", "bf16") == key("cpu", "tf32") == key("cpu", "fp32") == key("cuda", "fp32")
    assert len({key("cuda", "bf16"), key("cuda", "tf32"), key("cuda", "fp32")}) == 3
    with pytest.raises(
        ConfigError, match=r"'precision': 'fp16' is not allowed; expected one of 'fp32', 'tf32', 'bf16'"
    ):
        key("cuda", "fp16")


def test_digest_sees_weights_and_architecture(tiny_bundle, tiny_name):
    from clip2point.models import load_clip

    same = copy.deepcopy(tiny_bundle.visual)
    assert encoder_digest(same) == encoder_digest(tiny_bundle.visual)
    quick = load_clip(f"{tiny_name}-quickgelu", None).visual  # QuickGELU: same keys, other activation
    quick.load_state_dict(tiny_bundle.visual.state_dict())
    assert encoder_digest(quick) != encoder_digest(tiny_bundle.visual)


def test_corrupt_or_foreign_entry_is_rebuilt(tiny_bundle, data_root, tmp_path, caplog):
    ds, views = dataset(data_root), official_views(6)
    good = load_or_extract(tiny_bundle.visual, RENDER, ds, views, cache_dir=tmp_path, progress=False)
    good.path.write_bytes(b"not a safetensors file")
    rebuilt = load_or_extract(tiny_bundle.visual, RENDER, ds, views, cache_dir=tmp_path, progress=False)
    assert not rebuilt.hit and "unreadable" in caplog.text
    assert torch.equal(rebuilt.features, good.features)
    other = load_or_extract(
        tiny_bundle.visual, rerender(RENDER, dilation=1), ds, views, cache_dir=tmp_path, progress=False
    )
    os.replace(other.path, good.path)  # an entry of other settings under this key
    again = load_or_extract(tiny_bundle.visual, RENDER, ds, views, cache_dir=tmp_path, progress=False)
    assert not again.hit and "does not match" in caplog.text
    assert torch.equal(again.features, good.features)


def test_concurrent_builders_compute_once(tiny_bundle, data_root, tmp_path):
    ds, views = dataset(data_root), official_views(6)

    def build(_):
        return load_or_extract(tiny_bundle.visual, RENDER, ds, views, cache_dir=tmp_path, progress=False)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(build, range(2)))
    assert sorted(r.hit for r in results) == [False, True]
    assert torch.equal(results[0].features, results[1].features)
    assert len(entries(tmp_path)) == 1 and not list(tmp_path.glob(".*.tmp"))


def test_split_features_cached_equal_live_and_shared_encoder_stored_once(tiny_bundle, data_root, tmp_path):
    ds, views = dataset(data_root, split="train"), official_views(10)
    other = copy.deepcopy(tiny_bundle.visual)
    with torch.no_grad():
        other.proj.mul_(-1.0)
    encoders = [other, tiny_bundle.visual, tiny_bundle.visual]
    cached = SplitFeatures(ds, encoders, RENDER, views, cache_dir=tmp_path, batch_size=4, progress=False)
    live = SplitFeatures(ds, encoders, RENDER, views, cache_dir=None, batch_size=3)
    assert len(entries(tmp_path)) == 2  # the shared encoder's features are computed and stored once
    indices = torch.tensor([9, 2, 5, 0])
    from_cache, computed = cached(indices), live(indices)
    assert len(from_cache) == 3
    for a, b in zip(from_cache, computed, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(from_cache[0], -from_cache[1])  # the negated projection reaches the features
    assert torch.equal(cached.labels, torch.arange(10))
