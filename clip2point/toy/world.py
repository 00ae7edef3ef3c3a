"""``build_toy_world``: write the toy shapes in the real on-disk formats of ModelNet10, ShapeNet55 and ScanObjectNN.

Layout under ``out_dir``::

    ModelNet10/<class>/{train,test}/<class>_<k>.off       meshes in ModelNet's Z-up frame (readers apply "rot")
    ShapeNet55/ShapeNet-55/{train,test}.txt                lines "<synset>-<model>.npy"
    ShapeNet55/shapenet_pc/<synset>-<model>.npy            (8192, 3) float32 surface samples, unit sphere
    ShapeNet55/classes.json                                {synset: class name}, made-up synsets 9000000k
    rendering/<synset>_<model>/<i>.png                     224 x 224 RGB renders at the 10 official views
    ScanObjectNN/main_split_nobg/{training,test}_objectdataset.h5                      OBJ_ONLY
    ScanObjectNN/main_split/{training,test}_objectdataset.h5                           OBJ_BG
    ScanObjectNN/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5      PB_T50_RS
    meshes/chair.{obj,stl,glb}                             the chair of ModelNet10/chair/train/chair_0001.off,
                                                           Y up, in the formats ShapeNet, CAD tools and
                                                           Objaverse ship (the .glb with its face colours)
    toy_world.json                                         seed, size, counts, class mappings

The RGB renders (the pre-training images) are made as the paper's ShapeNet renders were, not as the depth
views are: :func:`clip2point.render.mesh.rgb_renderer`, a lit perspective camera (60-degree field of view) at
the official view angles but at distance :data:`~clip2point.render.mesh.RGB_DISTANCE` (2) instead of the
depth views' orthographic camera at distance 1, so an image and a depth map of one view are not pixel-aligned.

ScanObjectNN h5 files hold ``data (M, 2048, 3)`` float32 single-view scans and ``label (M,)`` int64 in
ScanObjectNN's class order (:data:`clip2point.data.classnames.SCANOBJECTNN`); the toy classes map as
:data:`SCANOBJECTNN_NAMES` says (bathtub has no ScanObjectNN counterpart and is left out; dresser and
night_stand both become "cabinet").
Every object is a pure function of ``(seed, part, class, index)``, so the bytes written depend only on
``seed`` and ``size``.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch
import trimesh
from PIL import Image
from tqdm import tqdm

from clip2point.data.classnames import SCANOBJECTNN
from clip2point.data.files import write_off
from clip2point.errors import InputError
from clip2point.render.cameras import align_modelnet, official_views
from clip2point.render.mesh import RGB_DISTANCE, MeshRenderer, rgb_renderer
from clip2point.toy.scans import perturb, single_view_scan
from clip2point.toy.shapes import CLASSES, ToyMesh, make_shape

SCANOBJECTNN_NAMES = {
    "bed": "bed", "chair": "chair", "desk": "desk", "dresser": "cabinet", "monitor": "display",
    "night_stand": "cabinet", "sofa": "sofa", "table": "table", "toilet": "toilet",
}  # fmt: skip
SCANOBJECTNN_LABELS = {toy: SCANOBJECTNN.index(name) for toy, name in SCANOBJECTNN_NAMES.items()}
SYNSETS = {f"{90000000 + i}": name for i, name in enumerate(CLASSES)}

# Objects per class and split: (train, test). Default test splits hold >= 400 objects (one object <= 0.25
# points of accuracy): 10 x 40 ModelNet10 and ShapeNet55, 9 x 45 ScanObjectNN (no bathtub).
SIZES = {
    "small": {"modelnet": (3, 2), "shapenet": (3, 2), "scan": (3, 2)},
    "default": {"modelnet": (40, 40), "shapenet": (50, 40), "scan": (30, 45)},
}
_PARTS = {"modelnet": 1, "shapenet": 2, "scan": 3}  # seed-stream ids
WORLD_VERSION = 4  # bump when what a seed builds changes (2: perspective lit RGB renders, 400-object tests;
#                   3: OFF vertices with 9 significant digits; 4: meshes/ in .obj, .stl, .glb)
MESH_FORMATS = ("obj", "stl", "glb")
SHAPENET_POINTS = 8192
SCAN_POINTS = 2048


def object_rng(seed: int, part: str, label: int, index: int) -> np.random.Generator:
    """The generator of object ``index`` of class ``label`` in ``part`` ('modelnet', 'shapenet', 'scan')."""
    return np.random.default_rng([seed, _PARTS[part], label, index])


def sample_cloud(mesh: ToyMesh, count: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, 3)`` float32 area-weighted surface samples, mean-centred and scaled into the unit sphere."""
    points = trimesh.sample.sample_surface(mesh.trimesh(), count, seed=int(rng.integers(2**31)))[0]
    points -= points.mean(0)
    return (points / np.linalg.norm(points, axis=1).max()).astype(np.float32)


def render_rgb(renderer: MeshRenderer, mesh: ToyMesh, azim, elev, dist) -> np.ndarray:
    """The RGB renders ``(V, S, S, 3)`` uint8 of ``mesh`` for the views ``azim, elev, dist`` (each ``(V,)``,
    degrees and depth-view distances) made by ``renderer`` (:func:`~clip2point.render.mesh.rgb_renderer`):
    the camera is at the same angles but ``RGB_DISTANCE`` times as far."""
    dist = torch.as_tensor(dist, dtype=torch.float32) * RGB_DISTANCE
    return renderer.render(mesh.vertices, mesh.faces, azim, elev, dist, face_colors=mesh.face_colors)


def to_modelnet_frame(vertices: np.ndarray) -> np.ndarray:
    """Y-up ``vertices (V, 3)`` -> ModelNet's Z-up frame: the inverse of :func:`align_modelnet`."""
    rot = align_modelnet(torch.eye(3)).numpy()  # rows = images of the unit vectors = the alignment matrix
    return vertices @ rot.T


def _tasks(size: str) -> list[tuple[str, str, int, int]]:
    """Every object to build: (part, split, label, index), index unique per (part, label)."""
    tasks = []
    for part, (n_train, n_test) in SIZES[size].items():
        labels = [i for i, c in enumerate(CLASSES) if part != "scan" or c in SCANOBJECTNN_LABELS]
        for label in labels:
            tasks += [(part, "train", label, k) for k in range(n_train)]
            tasks += [(part, "test", label, n_train + k) for k in range(n_test)]
    return tasks


def build_toy_world(out_dir: str | Path, seed: int = 0, size: str = "default", progress: bool = True) -> dict:
    """Write the toy world under ``out_dir`` (layout in the module docstring); returns the manifest dict
    that is also written to ``toy_world.json``. ``size`` is 'small' (tests) or 'default'."""
    if size not in SIZES:
        raise InputError(f"size={size!r} is not allowed; choose one of {', '.join(map(repr, SIZES))}")
    out = Path(out_dir)
    rgb = rgb_renderer(image_size=224)
    scanner = MeshRenderer(image_size=128)
    views = official_views(10)
    lists: dict[str, list[str]] = {"train": [], "test": []}
    scans: dict[str, dict[str, list]] = {s: {"nobg": [], "bg": [], "rs": [], "label": []} for s in lists}
    try:
        for part, split, label, k in tqdm(_tasks(size), desc="toy world", unit="obj", disable=not progress):
            rng = object_rng(seed, part, label, k)
            mesh = make_shape(label, rng)
            name = CLASSES[label]
            if part == "modelnet":
                path = out / "ModelNet10" / name / split / f"{name}_{k + 1:04d}.off"
                write_off(path, to_modelnet_frame(mesh.vertices), mesh.faces)
            elif part == "shapenet":
                synset, model = f"{90000000 + label}", f"toy{label:02d}{k:05d}"
                _write_shapenet(out, synset, model, mesh, rng, rgb, views)
                lists[split].append(f"{synset}-{model}.npy")
            else:
                scan_state = rng.bit_generator.state  # same view with and without background
                scans[split]["nobg"].append(single_view_scan(mesh, scanner, rng, SCAN_POINTS))
                rng.bit_generator.state = scan_state
                bg = single_view_scan(mesh, scanner, rng, SCAN_POINTS, background=True)
                scans[split]["bg"].append(bg)
                scans[split]["rs"].append(perturb(bg, rng))
                scans[split]["label"].append(SCANOBJECTNN_LABELS[name])
    finally:
        rgb.release()
        scanner.release()
    _write_lists(out, lists)
    _write_scans(out, scans)
    chair = CLASSES.index("chair")
    write_mesh_formats(out / "meshes", make_shape(chair, object_rng(seed, "modelnet", chair, 0)))
    manifest = {
        "version": WORLD_VERSION,
        "seed": seed,
        "size": size,
        "classes": list(CLASSES),
        "per_class_train_test": SIZES[size],
        "shapenet_synsets": SYNSETS,
        "scanobjectnn_labels": SCANOBJECTNN_LABELS,
    }
    (out / "toy_world.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_shapenet(out: Path, synset: str, model: str, mesh: ToyMesh, rng, rgb: MeshRenderer, views) -> None:
    cloud_dir = out / "ShapeNet55" / "shapenet_pc"
    cloud_dir.mkdir(parents=True, exist_ok=True)
    np.save(cloud_dir / f"{synset}-{model}.npy", sample_cloud(mesh, SHAPENET_POINTS, rng))
    image_dir = out / "rendering" / f"{synset}_{model}"
    image_dir.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(render_rgb(rgb, mesh, *views)):
        Image.fromarray(image).save(image_dir / f"{i}.png", compress_level=1)


def write_mesh_formats(folder: Path, mesh: ToyMesh) -> list[Path]:
    """``mesh`` as ``<folder>/<class>.<format>`` for each of :data:`MESH_FORMATS` (trimesh's writers, with
    face colours where the format keeps them); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    shape = trimesh.Trimesh(mesh.vertices, mesh.faces, face_colors=mesh.face_colors, process=False)
    paths = [folder / f"{mesh.name}.{suffix}" for suffix in MESH_FORMATS]
    for path in paths:
        shape.export(path, file_type=path.suffix[1:])
    return paths


def _write_lists(out: Path, lists: dict[str, list[str]]) -> None:
    list_dir = out / "ShapeNet55" / "ShapeNet-55"
    list_dir.mkdir(parents=True, exist_ok=True)
    for split, lines in lists.items():
        (list_dir / f"{split}.txt").write_text("".join(line + "\n" for line in lines))
    (out / "ShapeNet55" / "classes.json").write_text(json.dumps(SYNSETS, indent=2) + "\n")


def _write_scans(out: Path, scans: dict[str, dict[str, list]]) -> None:
    root = out / "ScanObjectNN"
    files = {
        "nobg": ("main_split_nobg", "{split}_objectdataset.h5"),
        "bg": ("main_split", "{split}_objectdataset.h5"),
        "rs": ("main_split", "{split}_objectdataset_augmentedrot_scale75.h5"),
    }
    for split, arrays in scans.items():
        labels = np.asarray(arrays["label"], dtype=np.int64)
        for variant, (folder, pattern) in files.items():
            path = root / folder / pattern.format(split="training" if split == "train" else "test")
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as f:
                f.create_dataset("data", data=np.stack(arrays[variant]), track_times=False)
                f.create_dataset("label", data=labels, track_times=False)
