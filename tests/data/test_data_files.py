"""Readers of the real formats (OFF, PLY, npy, h5, png) on tiny files written by the tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clip2point.data.files import (
    load_mesh,
    load_points,
    read_h5,
    read_image,
    read_npy,
    read_off,
    read_ply,
    read_ply_mesh,
    read_trimesh,
)
from clip2point.errors import InputError
from clip2point.render import OPENAI_CLIP_NORM
from tests.data.data_writers import (
    CUBE_QUADS,
    CUBE_V,
    write_gltf,
    write_h5,
    write_obj,
    write_off,
    write_ply,
    write_stl,
)

# The 12 triangles a fan over each cube quad gives: (p0, p1, p2), (p0, p2, p3).
CUBE_TRIS = np.array([t for q in CUBE_QUADS for t in ([q[0], q[1], q[2]], [q[0], q[2], q[3]])])


@pytest.mark.parametrize("quirk", [False, True])
def test_read_off_plain_and_modelnet_header_quirk(tmp_path, quirk):
    path = write_off(tmp_path / "cube.off", CUBE_V, CUBE_QUADS, quirk=quirk, comment=True)
    if quirk:
        assert path.read_text().startswith("OFF8 6 0\n")
    vertices, faces = read_off(path)
    np.testing.assert_array_equal(vertices, CUBE_V)
    np.testing.assert_array_equal(faces, CUBE_TRIS)
    assert faces.dtype == np.int64


def test_read_off_triangles_fast_path_and_comments(tmp_path):
    path = tmp_path / "t.off"
    path.write_text("OFF # header\n\n4 2 0\n0 0 0\n1 0 0 # x\n0 1 0\n0 0 1\n3 0 1 2\n3 0 2 3\n")
    vertices, faces = read_off(path)
    assert vertices.shape == (4, 3) and vertices[1].tolist() == [1, 0, 0]
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3]]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("PLY\n", r"not an OFF file"),
        ("OFF\n", r"truncated after the OFF header"),
        ("OFF\nfour 1 0\n", r"line 2: expected 'V F E' counts"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n", r"truncated: header announces 3 vertices and 1 faces, but only 2"),
        ("OFF3 1 0\n0 0 0\n1 x 0\n0 1 0\n3 0 1 2\n", r"line 3: non-numeric vertex"),
        ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", r"line 4: vertex needs 3 numbers"),
        ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0 0\n3 0 1 2\n", r"line 4: vertex needs 3 numbers"),
        ("OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1\n3 0 1 2 0\n", r"line 6: face needs n >= 3 and n"),
        ("OFF\n3 1 0\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n", r"line 4: non-finite vertex"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\ninf 1 0\n3 0 1 2\n", r"line 5: non-finite vertex"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1e39 0\n3 0 1 2\n", r"line 5: .* beyond float32's range .*1e39"),
        ("OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 3\n", r"line 7: face vertex index out of range"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n", r"line 6: face vertex index out of range"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 a 2\n", r"line 6: non-integer face"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", r"line 6: face needs n >= 3"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", r"line 6: face needs n >= 3 and n indices"),
    ],
)
def test_read_off_bad_input_names_file_and_line(tmp_path, text, match):
    path = tmp_path / "bad.off"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as info:
        read_off(path)
    assert str(path) in str(info.value)


def test_read_off_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"cannot read OFF file .*nope\.off"):
        read_off(tmp_path / "nope.off")


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_read_ply_mesh_all_formats(tmp_path, fmt):
    path = write_ply(tmp_path / "cube.ply", CUBE_V, CUBE_QUADS, fmt=fmt)
    vertices, faces = read_ply_mesh(path)
    np.testing.assert_array_equal(vertices, CUBE_V)
    np.testing.assert_array_equal(faces, CUBE_TRIS)
    np.testing.assert_array_equal(read_ply(path), CUBE_V)


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_read_ply_cloud_without_faces(tmp_path, fmt):
    pts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    path = write_ply(tmp_path / "c.ply", pts, fmt=fmt)
    vertices, faces = read_ply_mesh(path)
    np.testing.assert_array_equal(vertices, pts.astype(np.float64))
    assert faces.shape == (0, 3)


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian"])
def test_read_ply_truncated(tmp_path, fmt):
    path = write_ply(tmp_path / "t.ply", CUBE_V, CUBE_QUADS, fmt=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])
    with pytest.raises(InputError, match=r"t\.ply: truncated: element 'face'"):
        read_ply_mesh(path)


def test_read_ply_bad_inputs(tmp_path):
    path = tmp_path / "x.ply"
    path.write_bytes(b"not a ply")
    with pytest.raises(InputError, match=r"x\.ply: not a PLY file"):
        read_ply(path)
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float q\nend_header\n1\n")
    with pytest.raises(InputError, match=r"x\.ply: PLY file needs a 'vertex' element with x, y, z"):
        read_ply(path)
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty quaternion x\nend_header\n1\n")
    with pytest.raises(InputError, match=r"x\.ply: line 4: bad PLY header line"):
        read_ply(path)
    nan_pts = np.array([[0, 0, 0], [np.nan, 1, 1]])
    with pytest.raises(InputError, match=r"n\.ply: vertex 1 has a non-finite coordinate"):
        read_ply(write_ply(tmp_path / "n.ply", nan_pts, fmt="binary_little_endian"))
    with pytest.raises(InputError, match=r"f\.ply: face 0 has a vertex index out of range"):
        read_ply_mesh(write_ply(tmp_path / "f.ply", CUBE_V[:3], [[0, 1, 5]]))
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                     b"property float z\nend_header\n1 zz 3\n")  # fmt: skip
    with pytest.raises(InputError, match=r"x\.ply: non-numeric value in element 'vertex'"):
        read_ply(path)


def test_read_npy_and_bad_clouds(tmp_path):
    pts = np.arange(30, dtype=np.float32).reshape(10, 3)
    np.save(tmp_path / "a.npy", pts)
    np.testing.assert_array_equal(read_npy(tmp_path / "a.npy"), pts)
    np.save(tmp_path / "b.npy", np.zeros((10, 2)))
    with pytest.raises(InputError, match=r"b\.npy: expected a point cloud of shape \(N, 3\), got \(10, 2\)"):
        read_npy(tmp_path / "b.npy")
    np.save(tmp_path / "c.npy", np.zeros((0, 3)))
    with pytest.raises(InputError, match=r"c\.npy: the point cloud is empty"):
        read_npy(tmp_path / "c.npy")
    bad = pts.copy()
    bad[4, 1] = np.nan
    np.save(tmp_path / "d.npy", bad)
    with pytest.raises(InputError, match=r"d\.npy: point 4 has a non-finite coordinate"):
        read_npy(tmp_path / "d.npy")
    np.save(tmp_path / "e.npy", np.where(np.arange(len(pts))[:, None] == 3, 1e39, pts))  # float64
    with pytest.raises(InputError, match=r"e\.npy: point 3 .* beyond float32's range"):
        read_npy(tmp_path / "e.npy")
    (tmp_path / "e.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError, match=r"cannot read \.npy file .*e\.npy"):
        read_npy(tmp_path / "e.npy")


def test_read_h5_and_bad_h5(tmp_path):
    data = np.random.default_rng(1).normal(size=(3, 16, 3))
    path = write_h5(tmp_path / "s.h5", data, np.array([[2], [0], [1]]))
    d, lab = read_h5(path)
    np.testing.assert_array_equal(d, data.astype(np.float32))
    assert lab.tolist() == [2, 0, 1] and lab.dtype == np.int64
    import h5py

    with h5py.File(tmp_path / "k.h5", "w") as f:
        f.create_dataset("data", data=data)
    with pytest.raises(InputError, match=r"k\.h5: h5 lacks key\(s\) \['label'\]"):
        read_h5(tmp_path / "k.h5")
    with pytest.raises(InputError, match=r"m\.h5: expected data \(M, P, 3\) and label \(M,\)"):
        read_h5(write_h5(tmp_path / "m.h5", data, [0, 1]))
    data[2, 5, 0] = np.inf
    with pytest.raises(InputError, match=r"i\.h5: sample 2 of 'data' has a non-finite coordinate"):
        read_h5(write_h5(tmp_path / "i.h5", data, [0, 1, 2]))
    (tmp_path / "g.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match=r"cannot read h5 file .*g\.h5"):
        read_h5(tmp_path / "g.h5")


def test_read_image_normalises_and_composites_alpha(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, opaque on the left half; transparent (-> white) on the right
    rgba[:, :2, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "0.png")
    x = read_image(tmp_path / "0.png", 4)
    mean, std = torch.tensor(OPENAI_CLIP_NORM.mean), torch.tensor(OPENAI_CLIP_NORM.std)
    assert x.shape == (3, 4, 4) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 0, 0], (torch.tensor([1.0, 0, 0]) - mean) / std)
    torch.testing.assert_close(x[:, 0, 3], (torch.ones(3) - mean) / std)
    assert read_image(tmp_path / "0.png", 8).shape == (3, 8, 8)
    (tmp_path / "1.png").write_bytes(b"nope")
    with pytest.raises(InputError, match=r"cannot read image .*1\.png"):
        read_image(tmp_path / "1.png", 4)


def test_load_points_every_format(tmp_path):
    off = write_off(tmp_path / "cube.off", CUBE_V, CUBE_QUADS, quirk=True)
    ply = write_ply(tmp_path / "cube.ply", CUBE_V, CUBE_QUADS, fmt="binary_little_endian")
    cloud = np.random.default_rng(2).normal(size=(40, 3))
    np.save(tmp_path / "c.npy", cloud)
    h5 = write_h5(tmp_path / "c.h5", np.stack([cloud, 2 * cloud]), [0, 1])
    a = load_points(off, 64, seed=3)
    b = load_points(ply, 64, seed=3)
    assert a.shape == (64, 3) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)  # same mesh, same seed -> same cloud from either format
    torch.testing.assert_close(a.norm(dim=1).max(), torch.tensor(1.0))
    torch.testing.assert_close(a.mean(0), torch.zeros(3), atol=1e-6, rtol=0)
    n = load_points(tmp_path / "c.npy", 20)
    h = load_points(h5, 20, index=1)
    torch.testing.assert_close(n, h)  # sample 1 is a scaled copy: identical after normalisation
    raw = load_points(tmp_path / "c.npy", 40, normalize=False)
    torch.testing.assert_close(raw, torch.from_numpy(cloud.astype(np.float32)))
    with pytest.raises(InputError, match=r"c\.h5: sample index 2 out of range; the file holds 2"):
        load_points(h5, 20, index=2)
    with pytest.raises(InputError, match=r"c\.npy: the cloud has 40 points, fewer than the 100 asked for"):
        load_points(tmp_path / "c.npy", 100)
    with pytest.raises(InputError, match=r"x\.xyz: unsupported format '\.xyz'"):
        load_points(tmp_path / "x.xyz")
    with pytest.raises(InputError, match=r"c\.npy: unsupported mesh format"):
        load_mesh(tmp_path / "c.npy")


def corner_set(vertices: np.ndarray, faces: np.ndarray) -> list:
    """Each triangle as its sorted corner coordinates, sorted: equal for the same surface, whatever the
    vertex order or numbering."""
    return sorted(tuple(sorted(map(tuple, vertices[f].round(6).tolist()))) for f in faces)


SHIFT = np.array([3.0, 0.0, 0.0])  # where the glTF scenes' second node puts its copy of the cube


@pytest.mark.parametrize(
    "name, write, copies",
    [
        ("cube.obj", lambda p: write_obj(p, CUBE_V, CUBE_QUADS), 1),  # quads, texture coords, no .mtl
        ("cube.stl", lambda p: write_stl(p, CUBE_V, CUBE_TRIS), 1),  # 36 corners merged into 8
        ("two.glb", lambda p: write_gltf(p, CUBE_V, CUBE_TRIS, [(0, 0, 0), SHIFT]), 2),  # a scene, flattened
        ("two.gltf", lambda p: write_gltf(p, CUBE_V, CUBE_TRIS, [(0, 0, 0), SHIFT]), 2),
    ],
)
def test_trimesh_formats_give_the_written_triangles(tmp_path, name, write, copies):
    v, f = load_mesh(write(tmp_path / name))
    assert v.shape == (8 * copies, 3) and v.dtype == np.float64
    assert f.shape == (12 * copies, 3) and f.dtype == np.int64
    placed = np.concatenate([CUBE_V + k * SHIFT for k in range(copies)])
    tris = np.concatenate([CUBE_TRIS + 8 * k for k in range(copies)])
    assert corner_set(v, f) == corner_set(placed, tris)


def test_a_trimesh_format_is_sampled_on_its_surface(tmp_path):
    side = 25.4  # a unit cube in millimetres, as CAD tools write it
    raw = load_points(write_stl(tmp_path / "mm.stl", CUBE_V * side, CUBE_TRIS), 3000, seed=1, normalize=False)
    assert raw.shape == (3000, 3) and float(raw.min()) >= 0 and float(raw.max()) <= side + 1e-4
    gap = torch.minimum(raw, side - raw).amin(dim=1)  # distance to the nearest face plane
    assert float(gap.max()) < 1e-3  # every point on the surface
    faces = torch.where(raw < 1e-3, 0, 1) + 2 * torch.arange(
        3
    )  # which face: axis k at 0 -> 2k, at side -> 2k+1
    counts = torch.bincount(faces[gap.unsqueeze(1) == torch.minimum(raw, side - raw)], minlength=6)
    assert (
        counts.sum() == 3000 and (counts - 500).abs().max() < 5 * (3000 * 1 / 6 * 5 / 6) ** 0.5
    )  # area-uniform
    torch.testing.assert_close(load_points(tmp_path / "mm.stl", 100).norm(dim=1).max(), torch.tensor(1.0))


def test_trimesh_formats_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match=r"cannot read mesh file .*missing\.glb: no such file"):
        load_mesh(tmp_path / "missing.glb")
    (tmp_path / "bad.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(InputError, match=r"cannot read mesh file .*bad\.glb: ValueError"):
        load_mesh(tmp_path / "bad.glb")
    (tmp_path / "lines.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nl 1 2 3\n")
    with pytest.raises(InputError, match=r"lines\.obj: no triangle mesh in the file"):
        read_trimesh(tmp_path / "lines.obj")
    broken = CUBE_V.copy()
    broken[3, 1] = np.nan
    with pytest.raises(InputError, match=r"nan\.obj: vertex 3 has a non-finite coordinate"):
        load_mesh(write_obj(tmp_path / "nan.obj", broken, CUBE_QUADS))
    with pytest.raises(InputError, match=r"far\.obj: IndexError"):
        load_mesh(write_obj(tmp_path / "far.obj", CUBE_V, [*CUBE_QUADS, [0, 1, 20]]))
