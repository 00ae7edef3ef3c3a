"""Writers for tiny files in the real on-disk formats, used by the data tests (independent of the readers;
OFF through the library's writer, with the quirks some real files have)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clip2point.data.files import off_text

# A unit cube: 8 vertices, 6 quads (fan-triangulated by the readers into 12 triangles), area 6.
CUBE_V = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=np.float64
)
CUBE_QUADS = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [2, 3, 7, 6], [1, 2, 6, 5], [0, 4, 7, 3]]


def write_off(path: Path, vertices, polygons, quirk: bool = False, comment: bool = False) -> Path:
    """Write an OFF file (the library's writer); ``quirk`` puts the counts on the header line (``OFF8 6 0``,
    as some ModelNet files do), ``comment`` adds an empty and a comment line after the header."""
    text = off_text(vertices, polygons)
    if quirk:
        text = text.replace("OFF\n", "OFF", 1)
    if comment:
        header, rest = text.split("\n", 1)
        text = f"{header}\n\n# a comment line\n{rest}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_ply(path: Path, vertices, polygons=None, fmt: str = "ascii") -> Path:
    """Write a PLY: float x, y, z, an extra uchar property, optional faces (uchar count, int indices)."""
    vertices = np.asarray(vertices, dtype=np.float32)
    header = ["ply", f"format {fmt} 1.0", "comment written by the tests", f"element vertex {len(vertices)}"]
    header += ["property float x", "property float y", "property float z", "property uchar red"]
    if polygons is not None:
        header += [f"element face {len(polygons)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    head = ("\n".join(header) + "\n").encode()
    if fmt == "ascii":
        rows = [f"{x!r} {y!r} {z!r} 7" for x, y, z in vertices.tolist()]
        rows += [" ".join(str(i) for i in [len(p), *p]) for p in polygons or []]
        body = ("\n".join(rows) + "\n").encode()
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        vdt = np.dtype([("x", order + "f4"), ("y", order + "f4"), ("z", order + "f4"), ("r", "u1")])
        vert = np.zeros(len(vertices), vdt)
        vert["x"], vert["y"], vert["z"], vert["r"] = vertices[:, 0], vertices[:, 1], vertices[:, 2], 7
        body = vert.tobytes()
        for p in polygons or []:
            body += np.uint8(len(p)).tobytes() + np.asarray(p, dtype=order + "i4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + body)
    return path


def write_obj(path: Path, vertices, polygons, extra: str = "") -> Path:
    """Write a Wavefront OBJ: a missing material library, ``v`` lines, one texture coordinate per vertex, an
    object name, then ``f v/vt`` polygons (1-based); ``extra`` lines are appended as they are."""
    lines = ["mtllib missing.mtl", "o shape"]
    lines += [f"v {x!r} {y!r} {z!r}" for x, y, z in np.asarray(vertices, dtype=np.float64).tolist()]
    lines += [f"vt {i / max(len(vertices) - 1, 1)!r} 0" for i in range(len(vertices))]
    lines += ["usemtl wood"] + ["f " + " ".join(f"{i + 1}/{i + 1}" for i in p) for p in polygons]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def write_stl(path: Path, vertices, triangles) -> Path:
    """Write a binary STL: an 80-byte header, the count, then per triangle a zero normal, its three corners
    (float32) and a zero attribute word; every triangle repeats its corners, as STL does."""
    corners = np.asarray(vertices, dtype=np.float32)[np.asarray(triangles)]  # (F, 3, 3)
    record = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attr", "<u2")])
    rows = np.zeros(len(corners), record)
    rows["corners"] = corners
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"written by the tests".ljust(80, b" ") + np.uint32(len(rows)).tobytes() + rows.tobytes()
    )
    return path


def write_gltf(path: Path, vertices, triangles, translations) -> Path:
    """Write a glTF 2.0 scene, ``.glb`` (binary) or ``.gltf`` (JSON, buffer inline as a data URI) by the
    suffix: one mesh ``vertices (V, 3)`` / ``triangles (F, 3)`` placed by one node per translation."""
    import base64
    import json

    vertices = np.asarray(vertices, dtype="<f4")
    indices = np.asarray(triangles, dtype="<u4").reshape(-1)
    blob = indices.tobytes() + vertices.tobytes()
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": list(range(len(translations)))}],
        "nodes": [{"mesh": 0, "translation": [float(t) for t in tr]} for tr in translations],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 1}, "indices": 0, "mode": 4}]}],
        "accessors": [
            {"bufferView": 0, "componentType": 5125, "count": len(indices), "type": "SCALAR"},
            {"bufferView": 1, "componentType": 5126, "count": len(vertices), "type": "VEC3"},
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": indices.nbytes},
            {"buffer": 0, "byteOffset": indices.nbytes, "byteLength": vertices.nbytes},
        ],
        "buffers": [{"byteLength": len(blob)}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gltf":
        doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
        path.write_text(json.dumps(doc))
        return path
    text = json.dumps(doc).encode().ljust(-(-len(json.dumps(doc)) // 4) * 4, b" ")
    blob = blob.ljust(-(-len(blob) // 4) * 4, b"\0")
    chunks = [(text, b"JSON"), (blob, b"BIN\0")]
    body = b"".join(np.uint32(len(data)).tobytes() + kind + data for data, kind in chunks)
    path.write_bytes(b"glTF" + np.uint32(2).tobytes() + np.uint32(12 + len(body)).tobytes() + body)
    return path


def write_h5(path: Path, data, label) -> Path:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.asarray(data, dtype=np.float32))
        f.create_dataset("label", data=np.asarray(label))
    return path


def box(size=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0)):
    """Vertices and quads of an axis-aligned box."""
    return CUBE_V * np.asarray(size) + np.asarray(offset), CUBE_QUADS


def make_modelnet(
    root: Path, classes, splits=("train", "test"), per_class=None, folder="ModelNet10"
) -> list[Path]:
    """A ModelNet tree: split folders for every class, ``per_class`` {name: n} boxes of n sizes."""
    written = []
    for name in classes:
        for split in splits:
            d = root / folder / name / split
            d.mkdir(parents=True, exist_ok=True)
            for i in range((per_class or {}).get(name, 0)):
                v, q = box(size=(1 + i, 2, 0.5 + i), offset=(i, 0, 0))
                written.append(write_off(d / f"{name}_{i:04d}.off", v, q, quirk=i % 2 == 1))
    return written


def make_shapenet(root: Path, entries, split="train", points=128, views=10, size=8) -> None:
    """A ShapeNet55 tree: list file, ``points``-point clouds, renders whose red channel is ``20 * view``."""
    lists, clouds = root / "ShapeNet55" / "ShapeNet-55", root / "ShapeNet55" / "shapenet_pc"
    lists.mkdir(parents=True, exist_ok=True)
    clouds.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for synset, model in entries:
        np.save(clouds / f"{synset}-{model}.npy", rng.normal(size=(points, 3)).astype(np.float32))
        lines.append(f"{synset}-{model}.npy")
        render = root / "rendering" / f"{synset}_{model}"
        render.mkdir(parents=True, exist_ok=True)
        for i in range(views):
            from PIL import Image

            img = np.zeros((size, size, 3), np.uint8)
            img[..., 0] = 20 * i
            Image.fromarray(img).save(render / f"{i}.png")
    (lists / f"{split}.txt").write_text("\n".join(lines) + "\n")
