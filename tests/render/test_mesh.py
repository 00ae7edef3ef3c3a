"""Mesh RGB rendering: silhouettes where the point projection puts the surface, colours, lighting, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from clip2point.errors import InputError
from clip2point.render.cameras import official_views, view_transform
from clip2point.render.depth import DepthRenderer
from clip2point.render.mesh import MeshRenderer, triangle_soup

S = 64


@pytest.fixture(scope="module")
def renderer():
    r = MeshRenderer(image_size=S)
    yield r
    r.release()


def _l_shape() -> trimesh.Trimesh:
    """An L of two boxes, off-centre, with no mirror symmetry in any official view."""
    a = trimesh.creation.box(extents=(1.4, 0.7, 1.0))
    a.apply_translation((0.05, -0.3, 0.12))
    b = trimesh.creation.box(extents=(0.6, 0.7, 1.0))
    b.apply_translation((0.45, 0.4, 0.12))
    return trimesh.util.concatenate([a, b])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_silhouette_matches_depth_renderer_of_surface_points(renderer):
    mesh = _l_shape()
    azim, elev, dist = official_views(10)
    dist = dist * torch.tensor([1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 0.95, 0.95, 1.0, 1.1])
    images, depth = renderer.render(mesh.vertices, mesh.faces, azim, elev, dist, return_depth=True)
    assert images.shape == (10, S, S, 3) and images.dtype == np.uint8
    points = torch.from_numpy(trimesh.sample.sample_surface(mesh, 30000, seed=0)[0].astype(np.float32))
    raw = DepthRenderer(image_size=S, footprint="disk", radius=0.02, depth="minimum").raw_depth(
        points[None], azim, elev, dist
    )
    reference = (raw[0] >= 0).numpy()
    mirrored = []
    for k in range(10):
        silhouette = (images[k] < 255).any(-1)
        assert np.array_equal(silhouette, depth[k] >= 0)
        assert _iou(silhouette, reference[k]) > 0.9, k
        mirrored += [_iou(silhouette[:, ::-1], reference[k]), _iou(silhouette[::-1], reference[k])]
    # Left-right (OpenGL's +X right) or up-down (bottom-up rows) flips would not match: the test sees them.
    assert np.mean(mirrored) < 0.75


def _ray_cast_depth(mesh: trimesh.Trimesh, rot: torch.Tensor, trans: torch.Tensor) -> np.ndarray:
    """Exact ``(S, S)`` view z of the nearest triangle along each pixel centre's orthographic ray (dist 1;
    inf where the ray misses), by a vectorised Moller-Trumbore test in view coordinates."""
    tri = (torch.tensor(mesh.triangles, dtype=torch.float64) @ rot.double() + trans.double()).numpy()
    centres = 1 - (2 * np.arange(S) + 1) / S
    yf, xf = np.meshgrid(centres, centres, indexing="ij")  # rows -> y, cols -> x
    origin = np.stack([xf.ravel(), yf.ravel(), np.zeros(S * S)], axis=1)[:, None]  # (P, 1, 3), ray +z
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    pvec = np.cross(np.array([0.0, 0.0, 1.0]), e2)  # (F, 3)
    det = (e1 * pvec).sum(-1)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1 / np.where(ok, det, 1), 0)
    tvec = origin - tri[None, :, 0]  # (P, F, 3)
    u = (tvec * pvec).sum(-1) * inv
    qvec = np.cross(tvec, e1)
    v = qvec[..., 2] * inv
    t = (qvec * e2).sum(-1) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t >= 0)
    return np.where(hit, t, np.inf).min(axis=1).reshape(S, S)


def test_depth_is_nearest_view_z(renderer):
    """Per pixel, the mesh depth equals the exact ray-cast depth of the nearest surface."""
    mesh = _l_shape()
    azim, elev, dist = official_views(10)
    _, depth = renderer.render(mesh.vertices, mesh.faces, azim, elev, dist, return_depth=True)
    rot, trans = view_transform(azim, elev, dist)
    for k in range(10):
        ref = _ray_cast_depth(mesh, rot[k], trans[k])
        hit = np.isfinite(ref)
        agree = np.array_equal(depth[k] >= 0, hit)
        inside = hit & (depth[k] >= 0)
        assert agree or (np.logical_xor(depth[k] >= 0, hit).sum() <= 3), k  # edge ties only
        assert np.abs(depth[k][inside] - ref[inside]).max() < 1e-3, k


def test_face_colours_and_lighting():
    renderer = MeshRenderer(image_size=16, light=(0.0, 0.0, -1.0), ambient=0.25, diffuse=0.5)
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    normals = np.asarray(mesh.face_normals)
    colours = np.zeros((len(mesh.faces), 3), dtype=np.uint8)
    colours[normals[:, 0] > 0.5] = (200, 0, 0)  # +x faces red
    colours[normals[:, 2] > 0.5] = (0, 0, 200)  # +z faces blue
    azim = torch.tensor([90.0, 0.0])  # camera on +x, then on +z
    images = renderer.render(mesh.vertices, mesh.faces, azim, [0.0, 0.0], [1.0, 1.0], face_colors=colours)
    renderer.release()
    # Head-on light: shade = 0.25 + 0.5 * 1 = 0.75 -> 200 * 0.75 = 150.
    assert np.abs(images[0, 8, 8].astype(int) - (150, 0, 0)).max() <= 1
    assert np.abs(images[1, 8, 8].astype(int) - (0, 0, 150)).max() <= 1
    assert (images[:, 0, 0] == 255).all()  # white background outside the unit cube's [-0.5, 0.5] square


def test_vertex_colours_interpolate(renderer):
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    colours = np.full((len(mesh.vertices), 3), 0.5, dtype=np.float32)
    images = renderer.render(mesh.vertices, mesh.faces, [0.0], [0.0], [1.0], vertex_colors=colours)
    lit = images[0][(images[0] < 255).any(-1)]
    assert len(lit) > 0 and (np.ptp(lit, axis=0) <= 1).all() and (lit[:, 0] < 128).all()


def test_bad_input_names_the_problem(renderer):
    v = np.zeros((3, 3))
    f = np.array([[0, 1, 2]])
    with pytest.raises(InputError, match="out of range"):
        triangle_soup(v, np.array([[0, 1, 3]]))
    with pytest.raises(InputError, match="NaN"):
        triangle_soup(np.full((3, 3), np.nan), f)
    with pytest.raises(InputError, match=r"face_colors must have shape \(1, 3\)"):
        triangle_soup(v, f, face_colors=np.zeros((2, 3)))
    with pytest.raises(InputError, match=r"floats in \[0, 1\]"):
        triangle_soup(v, f, vertex_colors=np.full((3, 3), 2.0))
    with pytest.raises(InputError, match="not both"):
        triangle_soup(v, f, vertex_colors=np.zeros((3, 3)), face_colors=np.zeros((1, 3)))
    with pytest.raises(InputError, match="dist must be positive"):
        renderer.render(v, f, [0.0], [0.0], [0.0])


def test_missing_egl_device_says_what_to_install():
    with pytest.raises(RuntimeError, match="libegl1 libegl-mesa0 libgl1-mesa-dri"):
        MeshRenderer(image_size=8, egl_device=999)
