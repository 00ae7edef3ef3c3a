"""The on-disk cache: same samples as uncached, memory-mapped, invalidated by source or setting changes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from clip2point.data import MODELNET10, ModelNet, build_dataset, fingerprint, load_or_build
from clip2point.errors import InputError
from tests.data.data_writers import box, make_modelnet, write_off

N = 32


@pytest.fixture
def tree(tmp_path):
    files = make_modelnet(tmp_path / "data", MODELNET10, splits=("test",), per_class={"chair": 2, "sofa": 2})
    return tmp_path / "data", tmp_path / "cache", files


def served(ds) -> torch.Tensor:
    return torch.stack([ds[i]["points"] for i in range(len(ds))])


def test_cache_round_trip_equals_uncached_and_is_memory_mapped(tree):
    root, cache, _ = tree
    plain = ModelNet(root, "test", N, variant="modelnet10")
    cached = ModelNet(root, "test", N, variant="modelnet10", cache_dir=cache)
    entry = cache / "modelnet10-test"
    names = sorted(p.name for p in entry.iterdir())
    assert names == [".lock", "labels.npy", "manifest.json", "points.npy", "records.npy"]
    assert isinstance(cached._samples.points, np.memmap)
    assert torch.equal(served(cached), served(plain))
    assert cached.labels.tolist() == plain.labels.tolist() == [2, 2, 7, 7]
    np.testing.assert_array_equal(np.load(entry / "labels.npy"), [2, 2, 7, 7])
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["shape"] == [4, N, 3] and manifest["num_sources"] == 4 and manifest["skipped"] == []
    assert manifest["settings"] == {"dataset": "modelnet10-test", "num_points": N, "seed": 0, "align": True}
    stamp = (entry / "points.npy").stat().st_mtime_ns
    again = ModelNet(root, "test", N, variant="modelnet10", cache_dir=cache)  # reused, not rebuilt
    assert (entry / "points.npy").stat().st_mtime_ns == stamp
    assert torch.equal(served(again), served(plain))


def test_cache_rebuilt_when_a_source_or_a_setting_changes(tree):
    root, cache, files = tree
    first = served(ModelNet(root, "test", N, variant="modelnet10", cache_dir=cache))
    manifest = cache / "modelnet10-test" / "manifest.json"
    digest = json.loads(manifest.read_text())["fingerprint"]
    v, q = box(size=(5, 1, 1))
    write_off(files[0], v, q)  # chair_0000 becomes a long box
    st = files[0].stat()
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = ModelNet(root, "test", N, variant="modelnet10", cache_dir=cache)
    assert json.loads(manifest.read_text())["fingerprint"] != digest
    assert torch.equal(served(changed), served(ModelNet(root, "test", N, variant="modelnet10")))
    assert not torch.equal(served(changed)[0], first[0]) and torch.equal(served(changed)[1:], first[1:])
    fewer = ModelNet(root, "test", 16, variant="modelnet10", cache_dir=cache)  # a setting changes
    assert served(fewer).shape == (4, 16, 3)
    assert json.loads(manifest.read_text())["settings"]["num_points"] == 16
    unaligned = build_dataset("modelnet10", root, "test", 16, align=False, cache_dir=cache)
    assert torch.equal(
        served(unaligned), served(ModelNet(root, "test", 16, variant="modelnet10", align=False))
    )


def test_fingerprint_covers_paths_sizes_mtimes_and_settings(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("x")
    base = fingerprint([a], {"n": 1})
    assert fingerprint([a], {"n": 1}) == base
    assert fingerprint([a], {"n": 2}) != base
    assert fingerprint([a, tmp_path / "missing"], {"n": 1}) != base
    a.write_text("xy")
    assert fingerprint([a], {"n": 1}) != base


def test_interrupted_build_leaves_no_valid_entry(tmp_path):
    labels = np.arange(5)

    def compute(r):
        if r == 3:
            raise KeyboardInterrupt
        return np.full((4, 3), r, np.float32)

    with pytest.raises(KeyboardInterrupt):
        load_or_build(tmp_path, "x", [], {"k": 1}, labels, compute)
    assert not (tmp_path / "x" / "manifest.json").exists() and not (tmp_path / "x" / "points.npy").exists()
    samples = load_or_build(tmp_path, "x", [], {"k": 1}, labels, lambda r: np.full((4, 3), r, np.float32))
    np.testing.assert_array_equal(samples.points[:, 0, 0], [0, 1, 2, 3, 4])
    assert [p.name for p in (tmp_path / "x").iterdir() if p.name.endswith(".tmp")] == []


def test_cache_with_skipped_files_persists_the_skip_list(tree):
    root, cache, files = tree
    files[2].write_text("OFF\n3 1 0\n0 0 0\n")  # sofa_0000: truncated
    ds = ModelNet(root, "test", N, variant="modelnet10", cache_dir=cache, on_error="skip")
    assert len(ds) == 3 and ds.num_skipped == 1 and ds.skipped[0][0] == str(files[2])
    assert "truncated" in ds.skipped[0][1]
    assert np.load(cache / "modelnet10-test" / "points.npy", mmap_mode="r").shape == (3, N, 3)
    again = ModelNet(root, "test", N, variant="modelnet10", cache_dir=cache, on_error="skip")
    assert again.skipped == ds.skipped and again.records.tolist() == [0, 1, 3]
    uncached = ModelNet(root, "test", N, variant="modelnet10", on_error="skip")
    assert torch.equal(served(again), served(uncached))
    with pytest.raises(InputError, match=r"sofa_0000\.off: truncated"):
        ModelNet(root, "test", N, variant="modelnet10", cache_dir=cache / "other")


def test_all_inputs_bad_is_an_error(tmp_path):
    def compute(r):
        raise InputError(f"file{r}: broken")

    with pytest.raises(InputError, match=r"no usable samples; all 2 inputs failed \(first: file0: broken\)"):
        load_or_build(tmp_path, "y", [], {}, np.zeros(2), compute, on_error="skip")


def test_parallel_builders_build_an_entry_once(tmp_path):
    import threading
    import time

    calls = []

    def compute(r):
        calls.append(r)
        time.sleep(0.01)
        return np.full((2, 3), r, np.float32)

    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(load_or_build(tmp_path, "z", [], {}, np.arange(4), compute))
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == [0, 1, 2, 3]  # built by one thread; the others waited and loaded it
    assert all(np.array_equal(r.points[:, 0, 0], [0, 1, 2, 3]) for r in results) and len(results) == 3


def test_dataset_fingerprint_follows_files_and_settings(tmp_path):
    from clip2point.data import MODELNET10

    files = make_modelnet(tmp_path, MODELNET10, splits=("test",), per_class={"bathtub": 1, "bed": 1})
    first = ModelNet(tmp_path, "test", 32, variant="modelnet10")
    before = first.fingerprint()
    assert first.fingerprint() == ModelNet(tmp_path, "test", 32, variant="modelnet10").fingerprint()
    assert first.fingerprint() != ModelNet(tmp_path, "test", 64, variant="modelnet10").fingerprint()
    assert first.fingerprint() != ModelNet(tmp_path, "test", 32, variant="modelnet10", seed=1).fingerprint()
    write_off(files[0], *box(size=(3.25, 1.0, 1.0)))  # another size on disk: the source changed
    assert first.fingerprint() != before
