"""Surface sampling, farthest point sampling, unit-sphere normalisation, resampling, class names, K-shot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clip2point.data.classnames import (
    MODELNET10,
    MODELNET40,
    SCANOBJECTNN,
    SHAPENET55,
    SHAPENET55_SYNSET_IDS,
    class_names,
)
from clip2point.data.kshot import select_k_shot
from clip2point.data.sampling import (
    farthest_point_sample,
    normalize_unit_sphere,
    resample,
    sample_surface,
    triangle_areas,
)
from clip2point.errors import InputError

# Two triangles in the z = 0 plane with areas 3/2 and 1/2 (ratio 3:1), not sharing the region x in (1, 3).
TWO_TRI_V = np.array([[0, 0, 0], [3, 0, 0], [0, 1, 0], [3, 0, 0], [4, 0, 0], [3, 1, 0]], dtype=np.float64)
TWO_TRI_F = np.array([[0, 1, 2], [3, 4, 5]])


def test_triangle_areas():
    np.testing.assert_allclose(triangle_areas(TWO_TRI_V, TWO_TRI_F), [1.5, 0.5])


def test_surface_samples_lie_on_the_mesh_and_split_by_area():
    pts = sample_surface(TWO_TRI_V, TWO_TRI_F, 40_000, seed=0).astype(np.float64)
    assert pts.shape == (40_000, 3) and np.all(pts[:, 2] == 0)
    x, y = pts[:, 0], pts[:, 1]
    in_first = (x >= -1e-6) & (y >= -1e-6) & (x / 3 + y <= 1 + 1e-6)  # triangle (0,0) (3,0) (0,1)
    in_second = (x >= 3 - 1e-6) & (y >= -1e-6) & (x - 3 + y <= 1 + 1e-6) & (x <= 4 + 1e-6)
    assert np.all(in_first | in_second)
    frac = in_first.mean()
    assert abs(frac - 0.75) < 0.01  # binomial std ~0.002
    # uniform inside a triangle: the mean of the samples in it is its centroid
    np.testing.assert_allclose(pts[in_first].mean(0), [1.0, 1 / 3, 0], atol=0.02)


def test_surface_sampling_is_seeded():
    a = sample_surface(TWO_TRI_V, TWO_TRI_F, 100, seed=(1, 7))
    b = sample_surface(TWO_TRI_V, TWO_TRI_F, 100, seed=(1, 7))
    c = sample_surface(TWO_TRI_V, TWO_TRI_F, 100, seed=(1, 8))
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_surface_sampling_bad_meshes():
    with pytest.raises(InputError, match=r"m\.off: cannot sample a surface from a mesh without triangles"):
        sample_surface(TWO_TRI_V, np.zeros((0, 3), np.int64), 10, source="m.off")
    degenerate = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], dtype=np.float64)
    with pytest.raises(InputError, match=r"d\.off: mesh surface area is 0\.0"):
        sample_surface(degenerate, np.array([[0, 1, 2]]), 10, source="d.off")
    with pytest.raises(InputError, match=r"num_points must be >= 1"):
        sample_surface(TWO_TRI_V, TWO_TRI_F, 0)


def reference_fps(points: np.ndarray, m: int) -> list[int]:
    """Plain loop: start at 0, then the unchosen point farthest from the chosen set (first on ties)."""
    chosen = [0]
    nearest = [float("inf")] * len(points)
    for _ in range(m - 1):
        last = points[chosen[-1]]
        for j, p in enumerate(points):
            d = sum((float(p[k]) - float(last[k])) ** 2 for k in range(3))
            nearest[j] = min(nearest[j], d)
        best = None
        for j in range(len(points)):
            if j not in chosen and (best is None or nearest[j] > nearest[best]):
                best = j
        chosen.append(best)
    return chosen


def test_fps_matches_reference_loop_batched(device):
    pts = torch.from_numpy(np.random.default_rng(3).normal(size=(3, 60, 3)))  # float64: no float ties
    idx = farthest_point_sample(pts.to(device), 17)
    assert idx.shape == (3, 17) and idx.dtype == torch.long and idx.device == pts.to(device).device
    idx = idx.cpu()
    for b in range(3):
        assert idx[b].tolist() == reference_fps(pts[b].numpy(), 17)


def test_fps_with_duplicates_and_on_known_points():
    line = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [3, 0, 0], [10, 0, 0]]])
    assert farthest_point_sample(line, 3).tolist() == [[0, 5, 3]]  # tie 3/4 -> lowest index
    assert farthest_point_sample(line, 6)[0, -1].item() == 4  # the duplicate comes last (distance 0)


def test_fps_skips_points_near_the_origin_as_the_cuda_kernel():
    """|p|^2: 1, 1e-4, 4e-4, 1, 0.25, 9e-4: points 1, 2 and 5 are at most 1e-3 and never picked."""
    cloud = torch.tensor([[[1.0, 0, 0], [0.01, 0, 0], [0, 0, 0.02], [-1, 0, 0], [0.5, 0, 0], [0, 0.03, 0]]])
    assert farthest_point_sample(cloud, 3).tolist() == [[0, 3, 5]]  # 5: 1.0009 from both picks
    assert farthest_point_sample(cloud, 3, exclude_below=1e-3).tolist() == [[0, 3, 4]]
    # no candidate left after three picks: the kernel repeats index 0
    assert farthest_point_sample(cloud, 5, exclude_below=1e-3).tolist() == [[0, 3, 4, 0, 0]]
    # the first pick is index 0 even when it is excluded
    assert farthest_point_sample(cloud[:, [1, 0, 3]], 3, exclude_below=1e-3).tolist() == [[0, 2, 1]]


def test_fps_bad_input():
    with pytest.raises(InputError, match=r"expects points \(B, N, 3\), got \(5, 3\)"):
        farthest_point_sample(torch.zeros(5, 3), 2)
    with pytest.raises(InputError, match=r"cannot pick 6 of 5 points"):
        farthest_point_sample(torch.zeros(1, 5, 3), 6)


def test_normalize_unit_sphere_by_hand():
    pts = torch.tensor(
        [[[0.0, 0, 0], [2, 0, 0], [1, 4, 0], [1, -4, 0]], [[1.0, 1, 1], [1, 1, 3], [1, 1, 1], [1, 1, 3]]]
    )
    out = normalize_unit_sphere(pts)
    # cloud 0: mean (1, 0, 0), farthest 4 -> (p - (1,0,0)) / 4; cloud 1: mean (1,1,2), radius 1
    expected0 = torch.tensor([[-0.25, 0, 0], [0.25, 0, 0], [0, 1, 0], [0, -1, 0]])
    expected1 = torch.tensor([[0.0, 0, -1], [0, 0, 1], [0, 0, -1], [0, 0, 1]])
    torch.testing.assert_close(out, torch.stack([expected0, expected1]))
    torch.testing.assert_close(normalize_unit_sphere(pts[0]), expected0)


def test_normalize_and_resample_bad_clouds():
    with pytest.raises(InputError, match=r"all its points at one location"):
        normalize_unit_sphere(torch.ones(4, 3))
    with pytest.raises(InputError, match=r"the point cloud is empty"):
        normalize_unit_sphere(torch.zeros(0, 3))
    with pytest.raises(InputError, match=r"NaN or inf"):
        normalize_unit_sphere(torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0]]))
    with pytest.raises(InputError, match=r"cloud\.npy: the cloud has 3 points, fewer than the 5 asked for"):
        resample(torch.rand(3, 3), 5, source="cloud.npy")
    with pytest.raises(InputError, match=r"x\.h5: the point cloud contains NaN"):
        resample(torch.tensor([[float("inf"), 0, 0]]), 1, source="x.h5")


def test_resample_reduces_keeps_or_pads_by_repetition():
    pts = torch.from_numpy(np.random.default_rng(5).normal(size=(30, 3)))
    torch.testing.assert_close(resample(pts, 8), pts[reference_fps(pts.numpy(), 8)])
    assert resample(pts, 30) is pts
    small = torch.arange(9.0).reshape(3, 3)
    torch.testing.assert_close(resample(small, 7, allow_repeat=True), small[[0, 1, 2, 0, 1, 2, 0]])


def test_class_name_lists():
    assert len(MODELNET40) == 40 and len(set(MODELNET40)) == 40 and MODELNET40[15] == "flower_pot"
    assert len(MODELNET10) == 10 and set(MODELNET10) <= set(MODELNET40)
    assert len(SCANOBJECTNN) == 15 and SCANOBJECTNN[10] == "bed"
    assert len(SHAPENET55) == 55 == len(SHAPENET55_SYNSET_IDS)
    assert list(SHAPENET55_SYNSET_IDS) == sorted(SHAPENET55_SYNSET_IDS)
    assert all(len(s) == 8 and s.isdigit() for s in SHAPENET55_SYNSET_IDS)
    assert (SHAPENET55_SYNSET_IDS[0], SHAPENET55[0]) == ("02691156", "airplane")
    assert (SHAPENET55_SYNSET_IDS[-1], SHAPENET55[-1]) == ("04554684", "washer")
    assert SHAPENET55[SHAPENET55_SYNSET_IDS.index("03001627")] == "chair"
    assert class_names("modelnet10") is MODELNET10
    with pytest.raises(InputError, match=r"unknown class-name list 'mn'; allowed: modelnet40, modelnet10"):
        class_names("mn")


def test_k_shot_selection():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 2, 2])
    idx = select_k_shot(labels, 2, seed=0)
    assert idx.shape == (6,) and labels[idx].tolist() == [0, 0, 1, 1, 2, 2]
    assert len(set(idx.tolist())) == 6
    np.testing.assert_array_equal(idx, select_k_shot(labels, 2, seed=0))
    draws = {tuple(select_k_shot(labels, 2, seed=s)) for s in range(10)}
    assert len(draws) > 1  # the seed matters
    assert select_k_shot(labels, 3, seed=1)[3:6].tolist() == [1, 4, 7]  # class 1 has exactly 3: all, sorted
    with pytest.raises(InputError, match=r"class 'bed' \(label 1\) has 3 samples, fewer than k=4"):
        select_k_shot(labels, 4, class_names=["bathtub", "bed", "chair"])
    with pytest.raises(InputError, match=r"class 'desk' \(label 3\) has 0 samples"):
        select_k_shot(labels, 1, class_names=["bathtub", "bed", "chair", "desk"])
    with pytest.raises(InputError, match=r"k must be >= 1"):
        select_k_shot(labels, 0)
