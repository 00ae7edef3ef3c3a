"""Readers for the on-disk formats of docs/method.md section 5: OFF and PLY meshes, .npy and .h5 clouds, PNG renders,
and the mesh formats other tools ship (.obj, .stl, .glb, .gltf) through trimesh.

Every reader raises :class:`~clip2point.errors.InputError` naming the file (and, for text formats, the line)
when the content is malformed: truncated, non-numeric, out-of-range face indices, NaN/inf coordinates.
Vertices come back as float64 ``(V, 3)``, faces as int64 ``(F, 3)`` triangles (polygons fan-triangulated).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from clip2point.errors import InputError
from clip2point.logs import quiet_logger
from clip2point.paths import write_text_atomic
from clip2point.render.depth import OPENAI_CLIP_NORM, ImageNorm

_OFF_HEADER = re.compile(r"^OFF(?=\s|$|[-+\d])")


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _bad_vertices(vertices: np.ndarray) -> np.ndarray:
    """``(V,)`` bool: rows of ``vertices (V, 3)`` with a NaN, an inf, or a coordinate beyond float32's range
    (the clouds are float32: such a vertex would become inf)."""
    with np.errstate(invalid="ignore"):
        return ~(np.isfinite(vertices) & (np.abs(vertices) <= FLOAT32_MAX)).all(axis=1)


def _check_finite(path: Path, vertices: np.ndarray) -> None:
    bad = _bad_vertices(vertices)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"{path}: vertex {i} has a non-finite coordinate or one beyond float32's range "
            f"{vertices[i].tolist()}"
        )


def _check_faces(path: Path, faces: np.ndarray, num_vertices: int) -> None:
    bad = ((faces < 0) | (faces >= num_vertices)).any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"{path}: face {i} has a vertex index out of range {faces[i].tolist()}; "
            f"allowed 0..{num_vertices - 1}"
        )


def _fan(polygons: list[list[int]]) -> np.ndarray:
    """Fan-triangulate polygons ``[v0, v1, ..., vk]`` into triangles ``(v0, vi, vi+1)``; ``(F, 3)`` int64."""
    tris = [(p[0], p[i], p[i + 1]) for p in polygons for i in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _parse_floats(path: Path, lines: list[tuple[int, str]], width: int, what: str) -> np.ndarray:
    """``(len(lines), width)`` float64 from lines of at least ``width`` numbers each (extras ignored)."""
    split = [text.split() for _, text in lines]
    if all(len(t) == width for t in split):
        try:
            return np.array(split, dtype=np.float64).reshape(-1, width)
        except ValueError:
            pass  # locate the non-numeric line below
    rows = []
    for lineno, text in lines:  # slow path: extra columns, or locate the bad line
        tokens = text.split()
        if len(tokens) < width:
            raise InputError(f"{path}: line {lineno}: {what} needs {width} numbers, got {text.strip()!r}")
        try:
            rows.append([float(t) for t in tokens[:width]])
        except ValueError:
            raise InputError(f"{path}: line {lineno}: non-numeric {what} {text.strip()!r}") from None
    return np.asarray(rows, dtype=np.float64).reshape(-1, width)


def _parse_off_faces(path: Path, lines: list[tuple[int, str]]) -> np.ndarray:
    """Triangles ``(F', 3)`` from OFF face lines ``n i1 ... in [colour]``."""
    split = [text.split() for _, text in lines]
    if all(len(t) == 4 and t[0] == "3" for t in split):  # all triangles, no colours
        try:
            return np.array(split, dtype=np.int64)[:, 1:]
        except ValueError:
            pass  # locate the non-integer line below
    polygons = []
    for lineno, text in lines:
        tokens = text.split()
        try:
            polygon = [int(t) for t in tokens]
        except ValueError:
            raise InputError(f"{path}: line {lineno}: non-integer face {text.strip()!r}") from None
        if polygon[0] < 3 or len(polygon) < polygon[0] + 1:
            raise InputError(f"{path}: line {lineno}: face needs n >= 3 and n indices: {text.strip()!r}")
        polygons.append(polygon[1 : polygon[0] + 1])
    return _fan(polygons)


def read_off(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an OFF mesh: ``(vertices (V, 3) float64, faces (F, 3) int64)``.

    Accepts ``#`` comments, blank lines, the header ``OFF`` followed by a ``V F E`` line, and ModelNet's
    quirk with the counts on the header line (``OFF490 518 0``). Polygons with more than three vertices
    are fan-triangulated, so ``F`` may exceed the face count of the header.
    """
    path = Path(path)
    try:
        raw = path.read_text(errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read OFF file {path}: {exc}") from exc
    lines = [(i + 1, t) for i, line in enumerate(raw.splitlines()) if (t := line.split("#", 1)[0].strip())]
    if not lines or not _OFF_HEADER.match(lines[0][1]):
        raise InputError(f"{path}: not an OFF file (first line must start with 'OFF')")
    header_no, header = lines[0]
    counts, count_no, body = header[3:].split(), header_no, lines[1:]
    if not counts:  # plain header: the counts are on the next line
        if not body:
            raise InputError(f"{path}: truncated after the OFF header (no vertex/face counts)")
        (count_no, text), body = body[0], body[1:]
        counts = text.split()
    try:
        num_v, num_f = int(counts[0]), int(counts[1])
    except (ValueError, IndexError):
        got = " ".join(counts)
        raise InputError(f"{path}: line {count_no}: expected 'V F E' counts, got {got!r}") from None
    if num_v < 0 or num_f < 0:
        raise InputError(f"{path}: line {count_no}: negative counts V={num_v} F={num_f}")
    if len(body) < num_v + num_f:
        raise InputError(
            f"{path}: truncated: header announces {num_v} vertices and {num_f} faces, "
            f"but only {len(body)} data lines follow"
        )
    vlines, flines = body[:num_v], body[num_v : num_v + num_f]
    vertices = _parse_floats(path, vlines, 3, "vertex")
    bad = _bad_vertices(vertices)
    if bad.any():
        lineno, text = vlines[int(np.argmax(bad))]
        raise InputError(
            f"{path}: line {lineno}: non-finite vertex coordinate, or one beyond float32's range "
            f"(|x| <= {FLOAT32_MAX:.4g}): {text[:120]!r}"
        )
    faces = _parse_off_faces(path, flines) if flines else np.zeros((0, 3), np.int64)
    if ((faces < 0) | (faces >= num_v)).any():
        lineno, text = next(line for line in flines if _bad_indices(line[1], num_v))
        raise InputError(
            f"{path}: line {lineno}: face vertex index out of range in {text!r}; allowed 0..{num_v - 1}"
        )
    return vertices, faces


def _bad_indices(text: str, num_vertices: int) -> bool:
    tokens = text.split()
    return any(not 0 <= int(t) < num_vertices for t in tokens[1 : int(tokens[0]) + 1])


# ---------------------------------------------------------------------------------------------------- PLY

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}


def _ply_header(path: Path, data: bytes) -> tuple[str | None, list[tuple[str, int, list[tuple]]], int]:
    """Parse a PLY header: ``(byte order or None for ascii, elements, offset of the body)``.

    Each element is ``(name, count, properties)``; a property is ``(name, dtype)`` for a scalar or
    ``(name, count_dtype, item_dtype)`` for a list.
    """
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InputError(f"{path}: not a PLY file (needs 'ply' ... 'end_header')")
    newline = data.find(b"\n", end)
    body_start = len(data) if newline < 0 else newline + 1
    order, elements = "missing", []
    for lineno, line in enumerate(data[:end].decode("ascii", "replace").splitlines()[1:], start=2):
        tokens = line.split()
        if not tokens or tokens[0] in ("comment", "obj_info"):
            continue
        try:
            if tokens[0] == "format":
                order = _PLY_FORMATS[tokens[1]]
            elif tokens[0] == "element":
                elements.append((tokens[1], int(tokens[2]), []))
            elif tokens[0] == "property" and tokens[1] == "list":
                elements[-1][2].append((tokens[4], _PLY_TYPES[tokens[2]], _PLY_TYPES[tokens[3]]))
            elif tokens[0] == "property":
                elements[-1][2].append((tokens[2], _PLY_TYPES[tokens[1]]))
            else:
                raise KeyError(tokens[0])
        except (KeyError, IndexError, ValueError):
            raise InputError(f"{path}: line {lineno}: bad PLY header line {line!r}") from None
    if order == "missing":
        raise InputError(f"{path}: PLY header has no 'format' line")
    return order, elements, body_start


def _read_binary_element(path, buf, pos, order, name, count, props):
    """One binary element: ``({property: array}, new position)``; list properties give a list of arrays."""
    scalar = all(len(p) == 2 for p in props)
    if scalar:
        dtype = np.dtype([(p[0], order + p[1]) for p in props])
        if pos + dtype.itemsize * count > len(buf):
            raise InputError(f"{path}: truncated: element {name!r} needs {count} rows")
        arr = np.frombuffer(buf, dtype=dtype, count=count, offset=pos)
        return {p[0]: arr[p[0]] for p in props}, pos + dtype.itemsize * count
    out: dict[str, list] = {p[0]: [] for p in props}
    try:
        for _ in range(count):
            for p in props:
                if len(p) == 2:
                    dt = np.dtype(order + p[1])
                    out[p[0]].append(np.frombuffer(buf, dt, 1, pos)[0])
                    pos += dt.itemsize
                else:
                    cdt, idt = np.dtype(order + p[1]), np.dtype(order + p[2])
                    n = int(np.frombuffer(buf, cdt, 1, pos)[0])
                    out[p[0]].append(np.frombuffer(buf, idt, n, pos + cdt.itemsize).astype(np.int64))
                    pos += cdt.itemsize + idt.itemsize * n
    except ValueError:
        raise InputError(f"{path}: truncated: element {name!r} needs {count} rows") from None
    return out, pos


def _read_ascii_element(path, tokens, pos, name, count, props):
    """One ASCII element from a token list: ``({property: array or list of arrays}, new position)``."""
    try:
        if all(len(p) == 2 for p in props):
            n = count * len(props)
            if pos + n > len(tokens):
                raise IndexError
            arr = np.array(tokens[pos : pos + n], dtype=np.float64).reshape(count, len(props))
            return {p[0]: arr[:, k] for k, p in enumerate(props)}, pos + n
        out: dict[str, list] = {p[0]: [] for p in props}
        for _ in range(count):
            for p in props:
                if len(p) == 2:
                    out[p[0]].append(float(tokens[pos]))
                    pos += 1
                else:
                    k = int(tokens[pos])
                    if pos + 1 + k > len(tokens):
                        raise IndexError
                    out[p[0]].append(np.array(tokens[pos + 1 : pos + 1 + k], dtype=np.int64))
                    pos += 1 + k
        return out, pos
    except IndexError:
        raise InputError(f"{path}: truncated: element {name!r} needs {count} rows") from None
    except ValueError as exc:
        raise InputError(f"{path}: non-numeric value in element {name!r}: {exc}") from None


def read_ply_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A PLY file (ASCII, binary little/big endian) as ``(vertices (V, 3) float64, faces (F, 3) int64)``.

    Vertices come from the ``x, y, z`` properties of the ``vertex`` element; faces from the list property
    (``vertex_indices`` or ``vertex_index``) of an optional ``face`` element, fan-triangulated; a point
    cloud gives ``(0, 3)`` faces. Other elements and properties are read past and ignored.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read PLY file {path}: {exc.strerror}") from exc
    order, elements, pos = _ply_header(path, data)
    tokens = data[pos:].decode("ascii", "replace").split() if order is None else None
    values: dict[str, dict] = {}
    pos = 0 if order is None else pos
    for name, count, props in elements:
        if order is None:
            values[name], pos = _read_ascii_element(path, tokens, pos, name, count, props)
        else:
            values[name], pos = _read_binary_element(path, data, pos, order, name, count, props)
    vertex = values.get("vertex")
    if vertex is None or not {"x", "y", "z"} <= set(vertex):
        raise InputError(f"{path}: PLY file needs a 'vertex' element with x, y, z properties")
    vertices = np.stack([np.asarray(vertex[k], dtype=np.float64) for k in "xyz"], axis=1)
    _check_finite(path, vertices)
    face = values.get("face", {})
    lists = face.get("vertex_indices", face.get("vertex_index"))
    if lists is None:
        return vertices, np.zeros((0, 3), np.int64)
    if any(len(p) < 3 for p in lists):
        raise InputError(f"{path}: a PLY face has fewer than 3 vertices")
    faces = _fan([p.tolist() for p in lists])
    _check_faces(path, faces, len(vertices))
    return vertices, faces


def read_ply(path: str | Path) -> np.ndarray:
    """The ``x, y, z`` vertices ``(N, 3)`` float64 of a PLY file (see :func:`read_ply_mesh`)."""
    return read_ply_mesh(path)[0]


# ------------------------------------------------------------------------------------------- arrays, images


def check_cloud(points: np.ndarray, source: str | Path) -> np.ndarray:
    """Validate a cloud ``(N, 3)``: N >= 1, finite in float32; returns it as float32. Errors name ``source``."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"{source}: expected a point cloud of shape (N, 3), got {points.shape}")
    if points.shape[0] == 0:
        raise InputError(f"{source}: the point cloud is empty")
    if not np.issubdtype(points.dtype, np.number):
        raise InputError(f"{source}: point cloud dtype {points.dtype} is not numeric")
    bad = _bad_vertices(points)
    if bad.any():
        raise InputError(
            f"{source}: point {int(np.argmax(bad))} has a non-finite coordinate (NaN or inf) or one beyond "
            "float32's range"
        )
    return points.astype(np.float32, copy=False)


def read_npy(path: str | Path) -> np.ndarray:
    """A point cloud ``(N, 3)`` float32 stored as ``.npy`` (ShapeNet55 ``shapenet_pc``); validated."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read .npy file {path}: {exc}") from exc
    return check_cloud(arr, path)


def read_h5(path: str | Path, check_finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """ScanObjectNN-style h5: ``(data (M, P, 3) float32, label (M,) int64)`` from keys ``data``, ``label``.

    Labels stored as ``(M, 1)`` are flattened. With ``check_finite`` every cloud is checked for NaN/inf
    (datasets turn it off to check, and possibly skip, sample by sample).
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("data", "label") if k not in f]
            if missing:
                raise InputError(f"{path}: h5 lacks key(s) {missing}; needs 'data' (M, P, 3), 'label' (M,)")
            data, label = np.asarray(f["data"]), np.asarray(f["label"])
    except OSError as exc:
        raise InputError(f"cannot read h5 file {path}: {exc}") from exc
    if label.ndim == 2 and label.shape[1] == 1:
        label = label[:, 0]
    if data.ndim != 3 or data.shape[2] != 3 or label.shape != (data.shape[0],):
        raise InputError(f"{path}: expected data (M, P, 3) and label (M,), got {data.shape}, {label.shape}")
    if check_finite and not np.isfinite(data).all():
        bad = int(np.argmax(~np.isfinite(data).all(axis=(1, 2))))
        raise InputError(f"{path}: sample {bad} of 'data' has a non-finite coordinate")
    return data.astype(np.float32, copy=False), label.astype(np.int64)


def read_image(path: str | Path, size: int, norm: ImageNorm = OPENAI_CLIP_NORM) -> torch.Tensor:
    """An RGB render as an encoder input ``(3, size, size)`` float32, standardised with ``norm``.

    Transparent pixels are composited over white (the renders' background); the image is resized
    with bicubic interpolation when it is not already ``size`` x ``size``.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img = img.convert("RGBA")
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, img).convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean, std = norm.tensors(x)
    return (x - mean.view(3, 1, 1)) / std.view(3, 1, 1)


# ------------------------------------------------------------------------------------------- writing


def off_text(vertices, polygons) -> str:
    """The text of an OFF file: the header, ``vertices (V, 3)`` with 9 significant digits (exact for
    float32), then one line per polygon (its vertex count, then its indices; triangles or any size)."""
    rows = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    lines = ["OFF", f"{len(rows)} {len(polygons)} 0"]
    lines += [f"{x:.9g} {y:.9g} {z:.9g}" for x, y, z in rows.tolist()]
    lines += [" ".join(str(int(i)) for i in (len(p), *p)) for p in polygons]
    return "\n".join(lines) + "\n"


def write_off(path: str | Path, vertices, polygons) -> Path:
    """Write a mesh as an OFF file (:func:`off_text`), atomically; parents are created."""
    return write_text_atomic(path, off_text(vertices, polygons))


# ------------------------------------------------------------------------------------------- any format

TRIMESH_SUFFIXES = (".obj", ".stl", ".glb", ".gltf")  # ShapeNet's .obj, Objaverse's .glb, CAD's .stl
MESH_SUFFIXES = (".off", ".ply", *TRIMESH_SUFFIXES)
CLOUD_SUFFIXES = (*MESH_SUFFIXES, ".npy", ".h5")


def read_trimesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """An .obj, .stl, .glb or .gltf file through trimesh: ``(vertices (V, 3) float64, faces (F, 3) int64)``.

    A scene (a glTF's node tree, an OBJ's objects and groups) is flattened: every triangle mesh placed by
    its node transform, all concatenated; points and lines are left out. Materials and textures are not
    read (an OBJ's missing .mtl is no error). Vertices at the same position are merged (an STL repeats
    them for every triangle, an OBJ splits them by texture coordinate). Units are kept as the file has
    them: every consumer normalises the shape into the unit sphere, so millimetres and metres render alike.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot read mesh file {path}: no such file")
    try:
        with quiet_logger("trimesh"):  # its guesses (units, materials): errors say what matters
            scene = trimesh.load_scene(
                path, file_type=path.suffix.lower()[1:], process=False, skip_materials=True
            )
            geometries = [g for g in scene.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    except Exception as exc:  # trimesh's loaders raise anything from KeyError to struct.error
        raise InputError(f"cannot read mesh file {path}: {type(exc).__name__}: {exc}") from exc
    if not geometries:
        raise InputError(f"{path}: no triangle mesh in the file (empty, or only points or lines)")
    mesh = trimesh.util.concatenate(geometries)
    _check_finite(path, np.asarray(mesh.vertices))
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)


def load_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A triangle mesh ``(vertices (V, 3) float64, faces (F, 3) int64)`` from a file of
    :data:`MESH_SUFFIXES` (.off, .ply by this module's readers; the others by :func:`read_trimesh`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".off":
        return read_off(path)
    if suffix == ".ply":
        return read_ply_mesh(path)
    if suffix in TRIMESH_SUFFIXES:
        return read_trimesh(path)
    raise InputError(f"{path}: unsupported mesh format {suffix!r}; allowed: {', '.join(MESH_SUFFIXES)}")


def mesh_cloud(vertices: np.ndarray, faces: np.ndarray, num_points: int, seed: int, source: str | Path):
    """The cloud ``(num_points, 3)`` float32 of a mesh read by :func:`load_mesh`: ``num_points`` surface
    samples drawn with ``seed``, or, for a mesh without faces (a PLY point cloud), its vertices reduced by
    farthest point sampling. Not normalised; errors name ``source``."""
    from clip2point.data.sampling import resample, sample_surface

    if len(faces):
        cloud = sample_surface(vertices, faces, num_points, seed, source=str(source))
    else:
        cloud = check_cloud(vertices, source)
    return resample(
        torch.from_numpy(np.ascontiguousarray(cloud, dtype=np.float32)), num_points, source=str(source)
    )


def load_points(
    path: str | Path, num_points: int = 1024, seed: int = 0, index: int = 0, normalize: bool = True
) -> torch.Tensor:
    """A point cloud ``(num_points, 3)`` float32 from any file of :data:`CLOUD_SUFFIXES`.

    Meshes (.off, .obj, .stl, .glb, .gltf, .ply with faces) are surface-sampled with ``seed``; clouds (.npy,
    .ply without faces, sample ``index`` of an .h5 file) are reduced by farthest point sampling and must
    hold at least ``num_points`` points (:func:`mesh_cloud`). With ``normalize`` the cloud is centred and
    scaled into the unit sphere.
    """
    from clip2point.data.sampling import normalize_unit_sphere, resample

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CLOUD_SUFFIXES:
        raise InputError(f"{path}: unsupported format {suffix!r}; allowed: {', '.join(CLOUD_SUFFIXES)}")
    if suffix in MESH_SUFFIXES:
        points = mesh_cloud(*load_mesh(path), num_points, seed, path)
    else:
        if suffix == ".npy":
            cloud = read_npy(path)
        else:
            data, _ = read_h5(path)
            if not 0 <= index < len(data):
                raise InputError(
                    f"{path}: sample index {index} out of range; the file holds {len(data)} samples"
                )
            cloud = data[index]
        points = resample(torch.from_numpy(np.ascontiguousarray(cloud, dtype=np.float32)), num_points,
                          source=str(path))  # fmt: skip
    return normalize_unit_sphere(points) if normalize else points
