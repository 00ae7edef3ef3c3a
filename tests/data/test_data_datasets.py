"""Datasets over tiny trees in the real layouts: ModelNet, ModelNet40_Ply, ScanObjectNN, ShapeNet55."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from clip2point.data import (
    DATASET_NAMES,
    MODELNET10,
    ModelNet,
    ModelNet40Ply,
    ScanObjectNN,
    ShapeNet55,
    ShapeNet55Pretrain,
    build_dataset,
    farthest_point_sample,
    normalize_unit_sphere,
    read_off,
    sample_surface,
    select_k_shot,
)
from clip2point.errors import InputError
from clip2point.render import OPENAI_CLIP_NORM, official_views
from tests.data.data_writers import make_modelnet, make_shapenet, write_h5, write_ply

N = 32


@pytest.fixture
def modelnet10(tmp_path):
    files = make_modelnet(tmp_path, MODELNET10, per_class={"chair": 2, "toilet": 1, "bed": 1})
    return tmp_path, files


def test_modelnet10_labels_points_and_alignment(modelnet10):
    root, _ = modelnet10
    ds = ModelNet(root, "test", N, variant="modelnet10")
    raw = ModelNet(root, "test", N, variant="modelnet10", align=False)
    assert len(ds) == 4 and ds.class_names == MODELNET10
    assert ds.labels.tolist() == [
        1,
        2,
        2,
        9,
    ]  # bed, chair, chair, toilet in the label order of docs/method.md section 5
    assert [s.name for s in ds.sources] == [
        "bed_0000.off",
        "chair_0000.off",
        "chair_0001.off",
        "toilet_0000.off",
    ]
    for r in range(len(ds)):
        item = ds[r]
        assert item["label"] == ds.labels[r] and item["points"].shape == (N, 3)
        assert item["points"].dtype == torch.float32
        # independent composition: surface sample with seed (0, r), then p <- (p - mean) / max ||p - mean||
        v, f = read_off(ds.sources[r])
        p = torch.from_numpy(sample_surface(v, f, N, (0, r)))
        expected = normalize_unit_sphere(p)
        torch.testing.assert_close(raw[r]["points"], expected)
        x, y, z = expected.unbind(-1)  # "rot": p @ Rx(90) @ Ry(-90) maps (x, y, z) to (-y, z, -x)
        torch.testing.assert_close(item["points"], torch.stack([-y, z, -x], -1), atol=1e-6, rtol=0)
    assert not torch.equal(
        ModelNet(root, "test", N, variant="modelnet10", seed=1)[0]["points"], ds[0]["points"]
    )
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["points"].shape == (4, N, 3) and batch["label"].tolist() == [1, 2, 2, 9]


def test_modelnet_missing_folders_and_bad_options(tmp_path, modelnet10):
    root, _ = modelnet10
    layout = r"ModelNet40_manually_aligned/<class>/\{train,test\}/\*\.off"
    with pytest.raises(
        InputError, match=r"data folder .*ModelNet40_manually_aligned not found; expected layout: " + layout
    ):
        ModelNet(root, "test", N, variant="modelnet40")
    (root / "ModelNet10" / "sofa" / "train").rmdir()
    with pytest.raises(InputError, match=r"data folder .*ModelNet10/sofa/train not found"):
        ModelNet(root, "train", N, variant="modelnet10")
    with pytest.raises(InputError, match=r"split='val' is not allowed; use one of train, test"):
        ModelNet(root, "val", N, variant="modelnet10")
    with pytest.raises(InputError, match=r"on_error='ignore' is not allowed; use one of raise, skip"):
        ModelNet(root, "test", N, variant="modelnet10", on_error="ignore")
    with pytest.raises(InputError, match=r"ModelNet variant 'modelnet20' is not allowed"):
        ModelNet(root, "test", N, variant="modelnet20")
    empty = tmp_path / "empty"
    make_modelnet(empty, MODELNET10)
    with pytest.raises(InputError, match=r"modelnet10-test: no samples found"):
        ModelNet(empty, "test", N, variant="modelnet10")


def test_bad_mesh_raises_by_default_and_is_skipped_on_request(modelnet10, caplog):
    root, files = modelnet10
    bad = next(f for f in files if f.parent.name == "test" and f.name == "chair_0001.off")
    bad.write_text("OFF\n3 1 0\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n")
    ds = ModelNet(root, "test", N, variant="modelnet10")
    with pytest.raises(InputError, match=r"chair_0001\.off: line 4: non-finite vertex"):
        ds[2]
    with caplog.at_level(logging.WARNING):
        skipping = ModelNet(root, "test", N, variant="modelnet10", on_error="skip")
    assert len(skipping) == 3 and skipping.num_skipped == 1
    assert skipping.skipped[0][0] == str(bad) and "non-finite" in skipping.skipped[0][1]
    assert "skipped 1 of 4" in caplog.text
    assert skipping.labels.tolist() == [1, 2, 9] and skipping.records.tolist() == [0, 1, 3]
    torch.testing.assert_close(skipping[2]["points"], ds[3]["points"])  # same record, same sample


def test_modelnet40_ply(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(40, 3))
    write_ply(tmp_path / "ModelNet40_Ply" / "3_a.ply", a)
    write_ply(tmp_path / "ModelNet40_Ply" / "0_b.ply", b, fmt="binary_little_endian")
    ds = ModelNet40Ply(tmp_path, "test", N, align=False)
    assert ds.labels.tolist() == [0, 3] and ds.class_names[3] == "bench"
    cloud = torch.from_numpy(b.astype(np.float32))
    expected = normalize_unit_sphere(cloud[farthest_point_sample(cloud[None], N)[0]])
    torch.testing.assert_close(ds[0]["points"], expected)
    every = build_dataset("modelnet40_ply", tmp_path, "test", None, align=False)  # the authors': all points
    torch.testing.assert_close(every[0]["points"], normalize_unit_sphere(cloud))
    torch.testing.assert_close(
        every[1]["points"], normalize_unit_sphere(torch.from_numpy(a.astype(np.float32)))
    )
    with pytest.raises(InputError, match=r"input 1 gives 50 points, the first gave 40; .* one size"):
        build_dataset("modelnet40_ply", tmp_path, "test", None, on_error="skip")  # read up front: 40 and 50
    with pytest.raises(
        InputError, match=r"modelnet10-test: num_points=None \(every point of each file\) applies"
    ):
        build_dataset("modelnet10", tmp_path, "test", None)
    with pytest.raises(InputError, match=r"0_b\.ply: the cloud has 40 points, fewer than the 45 asked for"):
        ModelNet40Ply(tmp_path, "test", 45)[0]
    with pytest.raises(InputError, match=r"split='train' is not allowed; use one of test"):
        ModelNet40Ply(tmp_path, "train", N)
    write_ply(tmp_path / "ModelNet40_Ply" / "airplane_c.ply", a)
    with pytest.raises(InputError, match=r"airplane_c\.ply: file name must start with a ModelNet40 label"):
        ModelNet40Ply(tmp_path, "test", N)


def test_scanobjectnn_variants_fps_and_bad_samples(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(4, 64, 3))
    data[3] = 0.0  # six unit points on the axes, 58 at the centre: FPS as the authors' kernel skips those
    data[3, :6] = [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    write_h5(tmp_path / "main_split_nobg" / "test_objectdataset.h5", data, [3, 0, 14, 7])
    ds = ScanObjectNN(tmp_path, "test", 16, variant="obj_only")
    assert len(ds) == 4 and ds.labels.tolist() == [3, 0, 14, 7] and ds.class_names[14] == "toilet"
    cloud = normalize_unit_sphere(torch.from_numpy(data[2].astype(np.float32)))  # all points, once
    picked = farthest_point_sample(cloud[None], 16, exclude_below=1e-3)[0]
    torch.testing.assert_close(ds[2]["points"], cloud[picked])
    axes = torch.from_numpy(data[3, [0, 1, 2, 3, 4, 5] + [0] * 10].astype(np.float32))
    torch.testing.assert_close(ds[3]["points"], axes)  # the six, then index 0 again: no centre point
    pb = (
        tmp_path
        / "ScanObjectNN"
        / "h5_files"
        / "main_split"
        / "training_objectdataset_augmentedrot_scale75.h5"
    )
    data[1, 5] = np.nan
    write_h5(pb, data, [1, 1, 2, 2])
    pbds = build_dataset("scanobjectnn_pb_t50_rs", tmp_path, "train", 16, on_error="skip")
    assert len(pbds) == 3 and pbds.skipped[0][0] == f"{pb} sample 1"
    with pytest.raises(InputError, match=r"training_objectdataset_augmentedrot_scale75\.h5 sample 1: .*NaN"):
        ScanObjectNN(tmp_path, "train", 16, variant="pb_t50_rs")[1]
    with pytest.raises(
        InputError, match=r"ScanObjectNN file not found; tried .*main_split/test_objectdataset\.h5"
    ):
        ScanObjectNN(tmp_path, "test", 16, variant="obj_bg")
    write_h5(tmp_path / "main_split" / "test_objectdataset.h5", data[:1], [15])
    with pytest.raises(InputError, match=r"test_objectdataset\.h5: label 15 out of range; allowed 0\.\.14"):
        ScanObjectNN(tmp_path, "test", 16, variant="obj_bg")


def test_scanobjectnn_normalises_all_points_once_then_samples(tmp_path):
    """The authors' order, by hand: x = 0, 10, 1, 2 has mean 3.25 and radius 6.75, so the normalised cloud
    is (-13/27, 1, -1/3, -5/27); FPS from index 0 keeps -13/27 and its farthest point 1, and that pair is
    served as it is (normalising it again would give -1 and 1)."""
    scan = np.zeros((1, 4, 3), np.float32)
    scan[0, :, 0] = (0, 10, 1, 2)
    write_h5(tmp_path / "main_split" / "test_objectdataset.h5", scan, [0])
    points = ScanObjectNN(tmp_path, "test", 2, variant="obj_bg")[0]["points"]
    torch.testing.assert_close(points, torch.tensor([[-13 / 27, 0.0, 0.0], [1.0, 0.0, 0.0]]))


ENTRIES = [("03001627", "c1"), ("02691156", "a1"), ("03001627", "c2")]


def test_shapenet_eval_and_pretrain_pairs(tmp_path):
    make_shapenet(tmp_path, ENTRIES, split="train")
    ev = ShapeNet55(tmp_path, "train", N)
    assert ev.labels.tolist() == [18, 0, 18] and ev.class_names[18] == "chair"
    assert set(ev[0]) == {"points", "label"} and ev[0]["points"].shape == (N, 3)
    pre = ShapeNet55Pretrain(tmp_path, "train", N, image_size=8, seed=5)
    azim, elev, dist = official_views(10)
    mean, std = OPENAI_CLIP_NORM.mean[0], OPENAI_CLIP_NORM.std[0]
    views = []
    for r in range(3):
        item = pre[r]
        torch.testing.assert_close(item["points"], ev[r]["points"])
        assert item["image"].shape == (3, 8, 8)
        red = float(item["image"][0, 0, 0]) * std + mean  # the render's red channel is 20 * view / 255
        assert round(red * 255) == 20 * item["view"]
        assert (item["azim"], item["elev"], item["dist"]) == (azim[item["view"]], elev[item["view"]], dist[0])
        assert pre[r]["view"] == item["view"]  # reproducible
        views.append(item["view"])
    assert views == [int(np.random.default_rng((5, 0, r)).integers(10)) for r in range(3)]
    epochs = set()
    for e in range(6):
        pre.set_epoch(e)
        epochs.add(tuple(pre[r]["view"] for r in range(3)))
    assert len(epochs) > 1
    batch = next(iter(DataLoader(pre, batch_size=3)))
    assert batch["image"].shape == (3, 3, 8, 8) and batch["azim"].shape == (3,)


def test_shapenet_clouds_leave_out_the_authors_listed_model(tmp_path):
    """The validation list without the one model the authors drop (10,518 lines -> 10,517 models)."""
    entries = [("03001627", "udf068a6b-1a2b"), ("03001627", "udf068a6bx"), ("02691156", "a1")]
    make_shapenet(tmp_path, entries, split="test", views=0)
    val = ShapeNet55(tmp_path, "test", N)
    assert len(val) == 2 and val.labels.tolist() == [18, 0]
    assert val.skipped == [
        (str(tmp_path / "ShapeNet55" / "shapenet_pc" / "03001627-udf068a6b-1a2b.npy"),
         "left out by the authors' list (a model without renders)")
    ]  # fmt: skip
    assert [p.name for p in val.sources] == [
        "03001627-udf068a6bx.npy",
        "02691156-a1.npy",
    ]  # not a prefix match


def test_shapenet_bad_inputs(tmp_path):
    with pytest.raises(InputError, match=r"ShapeNet55/ShapeNet-55 not found; expected layout: ShapeNet55/"):
        ShapeNet55(tmp_path, "train", N)
    make_shapenet(tmp_path, ENTRIES, split="train")
    with pytest.raises(InputError, match=r"cannot read ShapeNet55 list .*test\.txt"):
        ShapeNet55(tmp_path, "test", N)
    (tmp_path / "ShapeNet55" / "shapenet_pc" / "02691156-a1.npy").unlink()
    ds = ShapeNet55(tmp_path, "train", N)
    with pytest.raises(InputError, match=r"cannot read \.npy file .*02691156-a1\.npy"):
        ds[1]
    assert build_dataset("shapenet55", tmp_path, "train", N, on_error="skip").labels.tolist() == [18, 18]
    with pytest.raises(InputError, match=r"the cloud has 128 points, fewer than the 200 asked for"):
        ShapeNet55(tmp_path, "train", 200)[0]
    lst = tmp_path / "ShapeNet55" / "ShapeNet-55" / "train.txt"
    lst.write_text("03001627-c1.npy\n99999999-x.npy\n")
    with pytest.raises(
        InputError, match=r"train\.txt: line 2: '99999999-x\.npy' is not '<synset>-<model>\.npy'"
    ):
        ShapeNet55(tmp_path, "train", N)


def test_pretrain_points_are_a_fresh_seeded_random_subset_every_epoch(tmp_path):
    make_shapenet(tmp_path, ENTRIES, split="train", points=128)
    make_shapenet(tmp_path, ENTRIES, split="test", points=128)
    raw = [
        torch.from_numpy(np.load(tmp_path / "ShapeNet55" / "shapenet_pc" / f"{s}-{m}.npy"))
        for s, m in ENTRIES
    ]
    pre = ShapeNet55Pretrain(tmp_path, "train", N, image_size=8, seed=5, sampling="random")
    val = build_dataset("shapenet55", tmp_path, "test", N, seed=5, sampling="random")
    assert pre.per_epoch and val.per_epoch
    drawn = {}
    for epoch in (0, 1, 2):
        pre.set_epoch(epoch)
        val.set_epoch(epoch)
        for r in range(3):
            # By hand: a permutation from the (seed, epoch, record, stream, split) generator, its first N
            # indices, then the unit-sphere normalisation (after picking, as the authors).
            pick = np.random.default_rng((5, epoch, r, 2, 1)).permutation(128)[:N]
            expected = normalize_unit_sphere(raw[r][torch.from_numpy(pick)])
            torch.testing.assert_close(pre[r]["points"], expected)
            torch.testing.assert_close(pre[r]["points"], expected)  # the same draw when read again
            val_pick = np.random.default_rng((5, epoch, r, 2, 2)).permutation(128)[:N]
            torch.testing.assert_close(
                val[r]["points"], normalize_unit_sphere(raw[r][torch.from_numpy(val_pick)])
            )
            drawn[epoch, r] = pick
    assert all(len(set(p.tolist())) == N for p in drawn.values())  # distinct points
    assert not np.array_equal(drawn[0, 0], drawn[1, 0]) and not np.array_equal(drawn[1, 0], drawn[2, 0])
    again = ShapeNet55Pretrain(tmp_path, "train", N, image_size=8, seed=5, sampling="random")
    again.set_epoch(1)  # a restarted run reaching epoch 1 draws what the first one drew
    torch.testing.assert_close(
        again[2]["points"], normalize_unit_sphere(raw[2][torch.from_numpy(drawn[1, 2])])
    )
    assert again.fingerprint() != pre.fingerprint()  # the epoch is part of what the samples depend on
    fps = ShapeNet55Pretrain(tmp_path, "train", N, image_size=8, seed=5)
    first = fps[0]["points"]
    fps.set_epoch(3)
    assert not fps.per_epoch and torch.equal(fps[0]["points"], first)
    torch.testing.assert_close(
        first, normalize_unit_sphere(raw[0][farthest_point_sample(raw[0][None], N)[0]])
    )
    # Not cached (the samples change every epoch); a bad cloud is still found up front under "skip".
    np.save(tmp_path / "ShapeNet55" / "shapenet_pc" / "02691156-a1.npy", np.zeros((16, 3), np.float32))
    skipping = ShapeNet55Pretrain(
        tmp_path, "train", N, image_size=8, sampling="random", cache_dir=tmp_path / "cache", on_error="skip"
    )
    assert skipping.records.tolist() == [0, 2] and "fewer than the 32 asked for" in skipping.skipped[0][1]
    assert not (tmp_path / "cache").exists()
    with pytest.raises(InputError, match=r"sampling='farthest' is not allowed; use one of fps, random"):
        ShapeNet55(tmp_path, "train", N, sampling="farthest")


def test_missing_renders_are_found_when_the_dataset_is_built(tmp_path, caplog):
    entries = [*ENTRIES, ("02691156", "a2"), ("02691156", "a3")]
    make_shapenet(tmp_path, entries, split="train")
    shutil.rmtree(tmp_path / "rendering" / "03001627_c2")  # no renders at all
    (tmp_path / "rendering" / "02691156_a3" / "7.png").unlink()  # one of ten missing
    with pytest.raises(
        InputError,
        match=r"shapenet55-train: 2 of 5 models have no complete set of renders <synset>_<model>/0\.\.9\.png "
        r"in .*rendering \(11 files missing; first: .*03001627_c2/0\.png, .*03001627_c2/1\.png, .*"
        r"03001627_c2/2\.png\); data\.on_error: skip leaves those models out",
    ):
        ShapeNet55Pretrain(tmp_path, "train", N, image_size=8)
    with caplog.at_level(logging.WARNING):
        pre = ShapeNet55Pretrain(tmp_path, "train", N, image_size=8, on_error="skip")
    assert (
        "2 of 5 models have no complete set of renders" in caplog.text and "leaving them out" in caplog.text
    )
    assert len(pre) == 3 and pre.num_skipped == 2
    assert [source.rsplit("/", 1)[-1] for source, _ in pre.skipped] == ["03001627-c2.npy", "02691156-a3.npy"]
    assert pre.skipped[1][1].endswith("02691156_a3/7.png")
    assert pre.model_ids == [("03001627", "c1"), ("02691156", "a1"), ("02691156", "a2")]
    assert pre.labels.tolist() == [18, 0, 0]
    for epoch in range(20):  # every view of every kept model can be drawn: no error mid-epoch
        pre.set_epoch(epoch)
        assert [pre[i]["label"] for i in range(len(pre))] == [18, 0, 0]
    cached = ShapeNet55Pretrain(tmp_path, "train", N, image_size=8, on_error="skip", cache_dir=tmp_path / "c")
    assert cached.num_skipped == 2 and torch.equal(cached[2]["points"], pre[2]["points"])
    assert len(ShapeNet55(tmp_path, "train", N)) == 5  # the clouds alone need no renders


def test_build_dataset_names_and_k_shot(modelnet10):
    root, _ = modelnet10
    assert DATASET_NAMES == (
        "modelnet10", "modelnet40", "modelnet40_ply", "scanobjectnn_obj_only", "scanobjectnn_obj_bg",
        "scanobjectnn_pb_t50_rs", "shapenet55", "shapenet55_pretrain",
    )  # fmt: skip
    ds = build_dataset("modelnet10", root, "train", N, seed=3, align=False)
    assert isinstance(ds, ModelNet) and not ds.align and ds.seed == 3 and len(ds) == 4
    with pytest.raises(InputError, match=r"unknown dataset 'modelnet'; allowed: modelnet10, modelnet40, "):
        build_dataset("modelnet", root, "train", N)
    idx = select_k_shot(ds.labels, 1, seed=0)  # the classes present: bed, chair, toilet
    assert ds.labels[idx].tolist() == [1, 2, 9]
    with pytest.raises(InputError, match=r"class 'bathtub' \(label 0\) has 0 samples"):
        select_k_shot(ds.labels, 1, class_names=ds.class_names)


def test_shapenet_custom_taxonomy(tmp_path):
    make_shapenet(tmp_path, [("900002", "x1"), ("900000", "y1"), ("900001", "z1")], split="train")
    taxonomy = tmp_path / "ShapeNet55" / "classes.json"
    taxonomy.write_text('{"900001": "chair", "900000": "bathtub", "900002": "table"}')
    ds = ShapeNet55(tmp_path, "train", N)
    assert ds.class_names == ("bathtub", "chair", "table")  # sorted by synset id
    assert ds.labels.tolist() == [2, 0, 1]
    taxonomy.write_text('["chair"]')
    with pytest.raises(InputError, match=r"classes\.json must map synset ids to class names"):
        ShapeNet55(tmp_path, "train", N)
    taxonomy.write_text('{"900001": "chair"}')
    with pytest.raises(InputError, match=r"train\.txt: line 1: '900002-x1\.npy' is not"):
        ShapeNet55(tmp_path, "train", N)
