"""The toy world: exact on-disk formats, every class in every split, determinism by seed, scan visibility."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from clip2point.commands import toy as toy_command
from clip2point.data.classnames import SCANOBJECTNN
from clip2point.data.files import load_mesh
from clip2point.errors import InputError
from clip2point.render.cameras import align_modelnet, official_views
from clip2point.render.mesh import RGB_DISTANCE, MeshRenderer, rgb_renderer
from clip2point.toy import CLASSES, SCANOBJECTNN_LABELS, SYNSETS, ToyMesh, build_toy_world, make_shape
from clip2point.toy.scans import single_view_scan
from clip2point.toy.shapes import _Assembly
from clip2point.toy.world import SCANOBJECTNN_NAMES, SIZES, object_rng

SMALL = SIZES["small"]


@pytest.fixture
def world(toy_world) -> Path:
    """The small world, seed 0 (the session's, tests/toy_setup.py)."""
    return toy_world


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_bytes(world, tmp_path):
    """The world built again, through the CLI verb, with the same seed: the same bytes."""
    parser = argparse.ArgumentParser()
    toy_command.add_arguments(parser)
    args = ["build", "--out", str(tmp_path / "again"), "--seed", "0", "--size", "small"]
    assert toy_command.run(parser.parse_args(args)) == 0
    first, second = _digest(world), _digest(tmp_path / "again")
    assert first == second and len(first) > 500
    other = make_shape(2, object_rng(1, "shapenet", 2, 0))
    assert not np.array_equal(other.vertices, make_shape(2, object_rng(0, "shapenet", 2, 0)).vertices)


@pytest.mark.slow
def test_modelnet_off_files(world):
    for label, name in enumerate(CLASSES):
        n_train, n_test = SMALL["modelnet"]
        for split, start, count in (("train", 0, n_train), ("test", n_train, n_test)):
            files = sorted((world / "ModelNet10" / name / split).glob("*.off"))
            assert [f.name for f in files] == [f"{name}_{k + 1:04d}.off" for k in range(start, start + count)]
        lines = files[0].read_text().splitlines()
        assert lines[0] == "OFF"
        nv, nf, ne = map(int, lines[1].split())
        assert ne == 0 and len(lines) == 2 + nv + nf
        vertices = np.loadtxt(lines[2 : 2 + nv], dtype=np.float32)
        faces = np.loadtxt(lines[2 + nv :], dtype=np.int64)
        assert (faces[:, 0] == 3).all()
        # Read back + ModelNet "rot" alignment = the Y-up shape the generator made.
        expected = make_shape(label, object_rng(0, "modelnet", label, start))
        assert np.array_equal(faces[:, 1:], expected.faces)
        assert np.allclose(align_modelnet(torch.from_numpy(vertices)).numpy(), expected.vertices, atol=2e-6)


@pytest.mark.slow
def test_meshes_in_other_formats_are_the_modelnet_chair(world):
    chair = CLASSES.index("chair")
    expected = make_shape(chair, object_rng(0, "modelnet", chair, 0))  # ModelNet10/chair/train/chair_0001.off
    for suffix in ("obj", "stl", "glb"):
        vertices, faces = load_mesh(world / "meshes" / f"chair.{suffix}")
        assert vertices.shape == expected.vertices.shape and faces.shape == expected.faces.shape
        assert np.allclose(np.sort(vertices, axis=0), np.sort(expected.vertices, axis=0), atol=1e-6)
        area = trimesh.Trimesh(vertices, faces, process=False).area
        assert area == pytest.approx(expected.trimesh().area, rel=1e-6)


@pytest.mark.slow
def test_shapenet_lists_clouds_and_renders(world):
    root = world / "ShapeNet55"
    assert json.loads((root / "classes.json").read_text()) == SYNSETS
    for split, count in zip(("train", "test"), SMALL["shapenet"], strict=True):
        text = (root / "ShapeNet-55" / f"{split}.txt").read_text()
        lines = text.splitlines()
        assert text.endswith(".npy\n") and len(lines) == count * len(CLASSES)
        assert all(re.fullmatch(r"9000000\d-toy\d{7}\.npy", line) for line in lines)
        assert {SYNSETS[line.split("-")[0]] for line in lines} == set(CLASSES)
        for line in lines[:: count * 3]:
            cloud = np.load(root / "shapenet_pc" / line)
            assert cloud.shape == (8192, 3) and cloud.dtype == np.float32
            assert np.isclose(np.linalg.norm(cloud, axis=1).max(), 1.0) and np.abs(cloud.mean(0)).max() < 1e-5
            folder = world / "rendering" / line.removesuffix(".npy").replace("-", "_", 1)
            assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}.png" for i in range(10))
            with Image.open(folder / "3.png") as image:
                assert image.size == (224, 224) and image.mode == "RGB"
                pixels = np.asarray(image)
            assert (pixels[0, 0] == 255).all() and (pixels < 250).any()  # white background, object drawn


@pytest.mark.slow
def test_renders_are_lit_perspective_views_at_rgb_distance(world):
    """The PNGs are the RGB setting's renders (perspective, camera at distance 2), not the depth views'."""
    label, k = 7, SMALL["shapenet"][0]  # the first test sofa
    mesh = make_shape(label, object_rng(0, "shapenet", label, k))
    azim, elev, dist = official_views(10)
    renderer, ortho = rgb_renderer(224), MeshRenderer(224)
    try:
        expected = renderer.render(
            mesh.vertices, mesh.faces, azim, elev, dist * RGB_DISTANCE, face_colors=mesh.face_colors
        )
        depth_view = ortho.render(mesh.vertices, mesh.faces, azim, elev, dist, face_colors=mesh.face_colors)
    finally:
        renderer.release()
        ortho.release()
    folder = world / "rendering" / f"{90000000 + label}_toy{label:02d}{k:05d}"
    for i in range(10):
        with Image.open(folder / f"{i}.png") as image:
            assert np.array_equal(np.asarray(image), expected[i]), i
    drawn, aligned = (expected < 255).any(-1), (depth_view < 255).any(-1)
    assert (drawn & aligned).sum() < 0.9 * (drawn | aligned).sum()  # not pixel-aligned with the depth views


def test_default_test_splits_hold_400_objects_and_16_shots():
    default = SIZES["default"]
    per_part = {"modelnet": len(CLASSES), "shapenet": len(CLASSES), "scan": len(SCANOBJECTNN_LABELS)}
    for part, classes in per_part.items():
        n_train, n_test = default[part]
        assert n_train >= 16 and n_test * classes >= 400, part


def test_scanobjectnn_labels_index_the_shared_class_list():
    assert set(SCANOBJECTNN_LABELS) == set(CLASSES) - {"bathtub"}
    assert {toy: SCANOBJECTNN[i] for toy, i in SCANOBJECTNN_LABELS.items()} == SCANOBJECTNN_NAMES
    assert SCANOBJECTNN_LABELS["dresser"] == SCANOBJECTNN_LABELS["night_stand"] == 3  # both "cabinet"
    assert SCANOBJECTNN_LABELS["sofa"] == 13 and SCANOBJECTNN_LABELS["monitor"] == 6  # "display"


@pytest.mark.slow
def test_scanobjectnn_h5_files(world):
    root = world / "ScanObjectNN"
    expected_labels = sorted(set(SCANOBJECTNN_LABELS.values()))
    for split, count in (("training", SMALL["scan"][0]), ("test", SMALL["scan"][1])):
        paths = [
            root / "main_split_nobg" / f"{split}_objectdataset.h5",
            root / "main_split" / f"{split}_objectdataset.h5",
            root / "main_split" / f"{split}_objectdataset_augmentedrot_scale75.h5",
        ]
        arrays = []
        for path in paths:
            with h5py.File(path, "r") as f:
                assert set(f.keys()) == {"data", "label"}
                data, label = f["data"][:], f["label"][:]
            assert data.shape == (count * len(SCANOBJECTNN_LABELS), 2048, 3) and data.dtype == np.float32
            assert label.shape == (len(data),) and label.dtype == np.int64
            assert sorted(set(label.tolist())) == expected_labels
            assert np.allclose(np.linalg.norm(data, axis=2).max(1), 1.0)
            arrays.append((data, label))
        assert all(np.array_equal(arrays[0][1], lab) for _, lab in arrays)
        assert not np.allclose(arrays[0][0], arrays[1][0]) and not np.allclose(arrays[1][0], arrays[2][0])


def test_scan_sees_only_the_faces_turned_to_the_camera():
    box = trimesh.creation.box(extents=(1.0, 0.6, 0.8))
    mesh = ToyMesh(
        np.asarray(box.vertices, np.float32), np.asarray(box.faces), np.zeros((12, 3), np.uint8), 0, "black"
    )
    renderer = MeshRenderer(image_size=128)
    cloud = single_view_scan(mesh, renderer, np.random.default_rng(0), num_points=2048)
    renderer.release()
    assert cloud.shape == (2048, 3) and cloud.dtype == np.float32
    for axis in range(3):
        on_min = np.isclose(cloud[:, axis], cloud[:, axis].min(), atol=1e-4).sum()
        on_max = np.isclose(cloud[:, axis], cloud[:, axis].max(), atol=1e-4).sum()
        # One face of each opposite pair; the hidden one only gets the thin band within the visibility
        # tolerance (0.02) of the visible edge.
        assert min(on_min, on_max) < 0.02 * len(cloud) and max(on_min, on_max) > 100, axis
    y = cloud[:, 1]
    assert np.isclose(y, y.max(), atol=1e-4).sum() > 100  # the camera looks down: the top is seen


def test_every_class_builds_inside_the_unit_sphere():
    for label in range(len(CLASSES)):
        mesh = make_shape(label, np.random.default_rng(label))
        assert mesh.name == CLASSES[label] and mesh.face_colors.shape == (len(mesh.faces), 3)
        assert np.isclose(np.linalg.norm(mesh.vertices, axis=1).max(), 1.0, atol=1e-6)


def test_oval_is_an_elliptic_frustum():
    assembly = _Assembly()
    assembly.oval((0.5, 1.0, 0.0), (2.0, 1.0), 1.0, 1.5, (1, 2, 3))
    vertices, faces, colours = assembly.merge()
    x, y, z = (vertices - (0.5, 1.0, 0.0)).T
    rim = (np.abs(np.abs(y) - 0.5) < 1e-9) & (np.hypot(x, z) > 1e-6)  # cap outlines, not the cap centres
    bottom, top = rim & (y < 0), rim & (y > 0)
    assert bottom.sum() == top.sum() == 32
    assert np.allclose(np.hypot(x[bottom] / 2.0, z[bottom] / 1.0), 1.0)  # semi-axes 2, 1
    assert np.allclose(np.hypot(x[top] / 3.0, z[top] / 1.5), 1.0)  # 1.5 times wider at the top
    assert (colours == (1, 2, 3)).all() and len(faces) == 128


def test_bad_size_and_label_are_named(tmp_path):
    with pytest.raises(InputError, match="size='huge' is not allowed"):
        build_toy_world(tmp_path, size="huge")
    with pytest.raises(InputError, match="label=10 is not a toy class"):
        make_shape(10, np.random.default_rng(0))


def test_real_readers_load_the_toy_world(world):
    from clip2point.data import build_dataset

    modelnet = build_dataset("modelnet10", world, "test", 64)
    assert len(modelnet) == 10 * SMALL["modelnet"][1] and sorted(set(modelnet.labels.tolist())) == list(
        range(10)
    )
    shapenet = build_dataset("shapenet55", world, "train", 64)
    assert shapenet.class_names == tuple(SYNSETS[s] for s in sorted(SYNSETS))
    pairs = build_dataset("shapenet55_pretrain", world, "train", 64, image_size=32)
    item = pairs[0]
    assert item["image"].shape == (3, 32, 32) and item["points"].shape == (64, 3)
    for variant in ("scanobjectnn_obj_only", "scanobjectnn_obj_bg", "scanobjectnn_pb_t50_rs"):
        scans = build_dataset(variant, world / "ScanObjectNN", "test", 64)
        assert len(scans) > 0 and set(scans.labels.tolist()) <= set(SCANOBJECTNN_LABELS.values())
