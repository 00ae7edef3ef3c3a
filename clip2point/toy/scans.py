"""Partial single-view "scans" of toy shapes, ScanObjectNN style, with or without background clutter.

A scan keeps the surface samples that one camera sees: the scene (the object, plus a floor slab and a back
wall for the background variants) is rendered to a depth buffer with :class:`MeshRenderer`, and a surface
sample survives when its view depth is within ``tolerance`` of the depth buffer at its pixel. The camera is
orthographic at a random azimuth in [0, 360) and elevation in [10, 45] degrees (looking down, as a person
scanning furniture does). Clouds stay Y-up, centred on their mean and scaled into the unit sphere.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from clip2point.render.cameras import view_transform
from clip2point.render.mesh import MeshRenderer
from clip2point.toy.shapes import ToyMesh

_GREY = np.array([150, 150, 150], dtype=np.uint8)


def _with_background(mesh: ToyMesh, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces of the object plus a floor slab under it and a wall behind it (-Z side)."""
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    margin = rng.uniform(0.2, 0.5)
    floor = trimesh.creation.box(extents=(hi[0] - lo[0] + 2 * margin, 0.02, hi[2] - lo[2] + 2 * margin))
    floor.apply_translation(((lo[0] + hi[0]) / 2, lo[1] - 0.01, (lo[2] + hi[2]) / 2))
    wall_h = (hi[1] - lo[1]) * rng.uniform(0.8, 1.3)
    wall = trimesh.creation.box(extents=(hi[0] - lo[0] + 2 * margin, wall_h, 0.02))
    wall.apply_translation(((lo[0] + hi[0]) / 2, lo[1] + wall_h / 2, lo[2] - rng.uniform(0.05, 0.3)))
    scene = trimesh.util.concatenate([mesh.trimesh(), floor, wall])
    return np.asarray(scene.vertices, dtype=np.float32), np.asarray(scene.faces)


def single_view_scan(
    mesh: ToyMesh,
    renderer: MeshRenderer,
    rng: np.random.Generator,
    num_points: int = 2048,
    background: bool = False,
    samples: int = 16384,
    tolerance: float = 0.02,
) -> np.ndarray:
    """``(num_points, 3)`` float32 visible surface points of ``mesh`` from one random view, unit sphere.

    ``renderer`` provides the depth buffer (its image size sets the visibility resolution); ``samples``
    surface points are drawn before the visibility test and ``num_points`` of the survivors are kept
    (with repetition only if fewer survive).
    """
    azim = torch.tensor([rng.uniform(0.0, 360.0)], dtype=torch.float32)  # drawn first: a generator in the
    elev = torch.tensor([rng.uniform(10.0, 45.0)], dtype=torch.float32)  # same state gives the same view
    dist = torch.ones(1)  # with and without background
    if background:
        vertices, faces = _with_background(mesh, rng)
    else:
        vertices, faces = mesh.vertices, mesh.faces
    colours = np.tile(_GREY, (len(faces), 1))
    _, depth = renderer.render(vertices, faces, azim, elev, dist, face_colors=colours, return_depth=True)
    scene = trimesh.Trimesh(vertices, faces, process=False)
    points = trimesh.sample.sample_surface(scene, samples, seed=int(rng.integers(2**31)))[0]
    points = points.astype(np.float32)
    rot, trans = view_transform(azim, elev, dist)
    view = (torch.from_numpy(points) @ rot[0] + trans[0]).numpy()
    s = renderer.image_size
    row = np.clip(np.round((1 - view[:, 1]) * s / 2 - 0.5).astype(int), 0, s - 1)
    col = np.clip(np.round((1 - view[:, 0]) * s / 2 - 0.5).astype(int), 0, s - 1)
    surface = depth[0][row, col]
    visible = points[(surface >= 0) & (view[:, 2] <= surface + tolerance)]
    keep = rng.choice(len(visible), num_points, replace=len(visible) < num_points)
    cloud = visible[keep]
    cloud -= cloud.mean(0)
    return (cloud / np.linalg.norm(cloud, axis=1).max()).astype(np.float32)


def perturb(cloud: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """PB_T50_RS-style augmentation of ``cloud (N, 3)``: random rotation about +Y, anisotropic scale in
    [0.75, 1.25], translation up to 0.1; re-normalised into the unit sphere. Returns ``(N, 3)`` float32."""
    t = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(t), 0, -np.sin(t)], [0, 1, 0], [np.sin(t), 0, np.cos(t)]])
    out = cloud @ rot * rng.uniform(0.75, 1.25, size=3) + rng.uniform(-0.1, 0.1, size=3)
    out -= out.mean(0)
    return (out / np.linalg.norm(out, axis=1).max()).astype(np.float32)
