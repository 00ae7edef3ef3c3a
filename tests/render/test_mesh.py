"""Mesh RGB rendering: silhouettes where the point projection puts the surface, the perspective camera against
hand computations and exact ray casts, colours, lighting, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from clip2point.errors import InputError
from clip2point.render.cameras import official_views, view_transform
from clip2point.render.depth import DepthRenderer
from clip2point.render.mesh import RGB_DISTANCE, MeshRenderer, rgb_renderer, triangle_soup

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


@pytest.mark.parametrize(("projection", "scale"), [("orthographic", 1.0), ("perspective", 2.2)])
def test_silhouette_matches_depth_renderer_of_surface_points(projection, scale):
    """Both projections put the surface where the point renderer's camera of the same name puts it."""
    mesh = _l_shape()
    azim, elev, dist = official_views(10)
    dist = scale * dist * torch.tensor([1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 0.95, 0.95, 1.0, 1.1])
    renderer = MeshRenderer(image_size=S, projection=projection, fov=60.0)
    images, depth = renderer.render(mesh.vertices, mesh.faces, azim, elev, dist, return_depth=True)
    renderer.release()
    assert images.shape == (10, S, S, 3) and images.dtype == np.uint8
    points = torch.from_numpy(trimesh.sample.sample_surface(mesh, 30000, seed=0)[0].astype(np.float32))
    points_renderer = DepthRenderer(
        image_size=S, footprint="disk", radius=0.02, projection=projection, fov=60.0
    )
    raw = points_renderer.raw_depth(points[None], azim, elev, dist)
    reference = (raw[0] >= 0).numpy()
    mirrored = []
    for k in range(10):
        silhouette = (images[k] < 255).any(-1)
        assert np.array_equal(silhouette, depth[k] >= 0)
        assert _iou(silhouette, reference[k]) > 0.9, k
        mirrored += [_iou(silhouette[:, ::-1], reference[k]), _iou(silhouette[::-1], reference[k])]
    # Left-right (OpenGL's +X right) or up-down (bottom-up rows) flips would not match: the test sees them.
    assert np.mean(mirrored) < 0.75


def _ray_cast_depth(
    mesh: trimesh.Trimesh, rot: torch.Tensor, trans: torch.Tensor, focal: float | None = None
) -> np.ndarray:
    """Exact ``(S, S)`` view z of the nearest triangle along each pixel centre's ray (inf where the ray
    misses), by a vectorised Moller-Trumbore test in view coordinates. Orthographic rays (``focal`` None, dist
    1) start at ``(x, y, 0)`` along +z; perspective rays start at the camera along ``(x / f, y / f, 1)``, so the
    ray parameter is the view z in both cases."""
    tri = (torch.tensor(mesh.triangles, dtype=torch.float64) @ rot.double() + trans.double()).numpy()
    centres = 1 - (2 * np.arange(S) + 1) / S
    yf, xf = np.meshgrid(centres, centres, indexing="ij")  # rows -> y, cols -> x
    ndc = np.stack([xf.ravel(), yf.ravel(), np.zeros(S * S)], axis=1)  # (P, 3)
    if focal is None:
        origin, direction = ndc, np.broadcast_to([0.0, 0.0, 1.0], ndc.shape)
    else:
        origin, direction = np.zeros_like(ndc), ndc / focal + [0.0, 0.0, 1.0]
    origin, direction = origin[:, None], direction[:, None]  # (P, 1, 3)
    e1, e2 = tri[None, :, 1] - tri[None, :, 0], tri[None, :, 2] - tri[None, :, 0]  # (1, F, 3)
    pvec = np.cross(direction, e2)  # (P, F, 3)
    det = (e1 * pvec).sum(-1)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1 / np.where(ok, det, 1), 0)
    tvec = origin - tri[None, :, 0]
    u = (tvec * pvec).sum(-1) * inv
    qvec = np.cross(tvec, e1)
    v = (qvec * direction).sum(-1) * inv
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


def test_perspective_depth_is_nearest_view_z():
    """Perspective (fov 60, camera at 2.5, mesh not scaled): depth per pixel = exact ray-cast view z."""
    mesh = _l_shape()
    renderer = MeshRenderer(image_size=S, projection="perspective", fov=60.0)
    azim, elev, dist = official_views(10)
    _, depth = renderer.render(mesh.vertices, mesh.faces, azim, elev, 2.5 * dist, return_depth=True)
    renderer.release()
    rot, trans = view_transform(azim, elev, 2.5 * dist)
    for k in range(10):
        ref = _ray_cast_depth(mesh, rot[k], trans[k], focal=1 / np.tan(np.radians(30.0)))
        hit = np.isfinite(ref)
        inside = hit & (depth[k] >= 0)
        assert np.logical_xor(depth[k] >= 0, hit).sum() <= 3, k  # edge ties only
        assert hit.sum() > 200 and np.abs(depth[k][inside] - ref[inside]).max() < 1e-3, k


def test_perspective_puts_a_point_where_the_formula_says():
    """A tiny cube around an off-centre point lands on the pixel of ``f * (x, y) / z`` (+X left, +Y up)."""
    size, fov = 128, 50.0
    point = np.array([0.35, -0.25, 0.3])
    cube = trimesh.creation.box(extents=(0.02, 0.02, 0.02))
    cube.apply_translation(point)
    azim, elev, dist = torch.tensor([30.0]), torch.tensor([20.0]), torch.tensor([2.2])
    renderer = MeshRenderer(image_size=size, projection="perspective", fov=fov)
    image, depth = renderer.render(cube.vertices, cube.faces, azim, elev, dist, return_depth=True)
    renderer.release()
    rot, trans = view_transform(azim, elev, dist)
    x, y, z = (torch.tensor(point, dtype=torch.float32) @ rot[0] + trans[0]).tolist()
    f = 1 / np.tan(np.radians(fov / 2))
    col, row = (1 - f * x / z) * size / 2 - 0.5, (1 - f * y / z) * size / 2 - 0.5
    rows, cols = np.nonzero(depth[0] >= 0)
    assert 4 <= len(rows) <= 16  # a 0.02 cube at z ~ 2: about 2.6 pixels across
    assert abs(rows.mean() - row) < 0.5 and abs(cols.mean() - col) < 0.5, (rows.mean(), row, cols.mean(), col)
    assert np.array_equal(np.nonzero((image[0] < 255).any(-1)), (rows, cols))
    assert np.abs(depth[0][rows, cols] - z).max() < 0.02  # the cube's faces are 0.01 from its centre


@pytest.mark.parametrize(("dist", "first", "last"), [(2.0, 14, 49), (3.0, 21, 42)])
def test_perspective_silhouette_of_a_cube_head_on(dist, first, last):
    """Unit cube seen head-on from ``dist`` with fov 60: its front face (z = dist - 0.5) spans NDC
    ``|x|, |y| < f * 0.5 / (dist - 0.5)`` with ``f = 1 / tan(30 deg) = 1.732``, i.e. 0.577 at dist 2 and 0.346 at
    dist 3; the 64-pixel centres ``1 - (2j + 1) / 64`` inside are j = 14..49 and j = 21..42."""
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    renderer = MeshRenderer(image_size=S, projection="perspective", fov=60.0)
    image, depth = renderer.render(cube.vertices, cube.faces, [0.0], [0.0], [dist], return_depth=True)
    renderer.release()
    expected = np.zeros((S, S), dtype=bool)
    expected[first : last + 1, first : last + 1] = True
    assert np.array_equal(depth[0] >= 0, expected)
    assert np.array_equal((image[0] < 255).any(-1), expected)
    assert np.abs(depth[0][expected] - (dist - 0.5)).max() < 1e-4


def test_specular_highlight_follows_the_view_direction():
    """Head-on light, +z face of a red cube: orthographic -> the full highlight everywhere; perspective -> the
    highlight ``0.2 * cos(angle to the pixel's ray) ** 64`` fades towards the face's edges."""
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    red = np.tile(np.array([[200, 0, 0]], dtype=np.uint8), (len(cube.faces), 1))
    shading = {"light": (0.0, 0.0, -1.0), "ambient": 0.25, "diffuse": 0.5, "specular": 0.2, "shininess": 64.0}
    ortho = MeshRenderer(image_size=S, **shading)
    flat = ortho.render(cube.vertices, cube.faces, [0.0], [0.0], [1.0], face_colors=red)[0]
    ortho.release()
    # 200/255 * (0.25 + 0.5) + 0.2 = 0.788 -> 201 red; 0.2 -> 51 green and blue
    assert np.abs(flat[S // 2, S // 2].astype(int) - (201, 51, 51)).max() <= 1
    persp = MeshRenderer(image_size=S, projection="perspective", fov=60.0, **shading)
    image = persp.render(cube.vertices, cube.faces, [0.0], [0.0], [2.0], face_colors=red)[0]
    persp.release()
    f = 1 / np.tan(np.radians(30.0))
    for i in (32, 20, 15):  # rows on the diagonal, pixel centre NDC 1 - (2i + 1) / S in x and y
        ray = np.array([(1 - (2 * i + 1) / S) / f] * 2 + [1.0])
        highlight = 0.2 * (1 / np.linalg.norm(ray)) ** 64
        expected = np.round(255 * (np.array([200 / 255 * 0.75, 0, 0]) + highlight))
        assert np.abs(image[i, i].astype(int) - expected).max() <= 1, (i, image[i, i], expected)
    assert image[15, 15, 1] < 5 < 40 < image[32, 32, 1]


def test_rgb_renderer_frames_the_unit_sphere_at_rgb_distance():
    """The RGB setting: the unit sphere seen from distance 2 subtends a half-angle asin(1/2) = 30 deg = fov / 2,
    so its silhouette is the image's inscribed circle (as in the orthographic depth views at distance 1); its
    nearest point is at depth 2 - 1 = 1."""
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    renderer = rgb_renderer(image_size=S)
    image, depth = renderer.render(
        sphere.vertices, sphere.faces, [0.0], [0.0], [RGB_DISTANCE], return_depth=True
    )
    renderer.release()
    assert renderer.projection == "perspective" and RGB_DISTANCE == 2.0
    drawn = depth[0] >= 0
    assert drawn[S // 2].all() and drawn[:, S // 2].all() and not drawn[0, 0]
    assert abs(depth[0][S // 2 - 1 : S // 2 + 1, S // 2 - 1 : S // 2 + 1].min() - 1.0) < 5e-3
    assert (image[0][drawn] < 255).any(-1).all()


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
    with pytest.raises(InputError, match="projection='fisheye' is not allowed"):
        MeshRenderer(image_size=8, projection="fisheye")
    with pytest.raises(InputError, match=r"fov must be in \(0, 180\)"):
        MeshRenderer(image_size=8, projection="perspective", fov=180.0)
    with pytest.raises(InputError, match="light must be a finite, non-zero 3-vector"):
        MeshRenderer(image_size=8, light=(0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="shininess > 0"):
        MeshRenderer(image_size=8, shininess=0.0)


def test_missing_egl_device_says_what_to_install():
    with pytest.raises(RuntimeError, match="libegl1 libegl-mesa0 libgl1-mesa-dri"):
        MeshRenderer(image_size=8, egl_device=999)
