"""Triangle meshes -> RGB images (and depth): headless OpenGL (moderngl, EGL), in PyTorch3D's camera convention.

Cameras: ``(R, T) = view_transform(azim, elev, dist)`` (PyTorch3D's look-at cameras), ``x_view = x @ R + T``,
with one of two projections:

- ``"orthographic"`` (the depth views' camera): the mesh is first scaled by ``1/dist``, as the depth renderer
  scales point clouds, and NDC ``(x, y) = view (x, y)``; surfaces at ``z < 0`` are invisible.
- ``"perspective"`` (PyTorch3D's ``FoVPerspectiveCameras``, aspect 1): the mesh is not scaled, the camera
  sits at distance ``dist`` and NDC ``(x, y) = f * view (x, y) / z`` with ``f = 1 / tan(fov / 2)``;
  surfaces nearer than ``near`` are clipped.

NDC follows PyTorch3D (+X points LEFT, +Y UP) and pixel ``(row i, col j)`` of an ``S x S`` image has its
centre at NDC ``(1 - (2j + 1)/S, 1 - (2i + 1)/S)``. OpenGL's NDC has +X to the RIGHT and its framebuffer
rows go bottom-up, so the vertex shader negates x and the read-back flips the rows. The returned depth is
view-space ``z`` of the nearest surface in both projections.

Shading is per face (flat normals), two-sided, with one directional light ``l`` fixed in the camera frame:
``colour * (ambient + diffuse * |n . l|) + specular * max(r . v, 0) ** shininess`` on a white background,
where ``n`` is the face normal turned towards the viewer, ``r`` the reflection of the light about ``n`` and
``v`` the direction from the surface to the camera (white highlights, Phong's model).

Two settings are used in this project. The depth views' companion (the defaults): orthographic, a light 30
degrees off the view axis, ``ambient 0.45 + diffuse 0.55``, no highlight -- pixel-aligned with the depth
maps of the same view. RGB renders "as photographed" (:func:`rgb_renderer`, camera distance
:data:`RGB_DISTANCE`), made the way the paper's ShapeNet renders were (MVTN on PyTorch3D): perspective with a
60-degree field of view (PyTorch3D's default) at twice the depth views' distance, lit by a light near the
camera with PyTorch3D's default Phong intensities (ambient 0.5, diffuse 0.3, specular 0.2, shininess 64). From
distance 2 the unit sphere around an object subtends 30 degrees = fov / 2, so it just fits the image as it does
in the depth views, but the object itself looks smaller (its middle spans 87% of the width it has there) and its
near parts larger than its far ones: RGB renders and depth maps of one view are not pixel-aligned.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from clip2point.errors import InputError
from clip2point.render.cameras import view_transform

RGB_DISTANCE = 2.0  # camera distance of RGB renders: twice the depth views' (official dist 1)
RGB_FOV = 60.0  # degrees, PyTorch3D's default field of view
RGB_LIGHT = (0.2, 0.35, -1.0)  # towards the light, camera frame: slightly above and left of the camera

_PROJECTIONS = ("orthographic", "perspective")

EGL_PACKAGES = Path(__file__).resolve().parents[1] / "assets" / "egl_packages.txt"  # Debian/Ubuntu names


def egl_packages() -> list[str]:
    """The Debian/Ubuntu packages of headless OpenGL (:data:`EGL_PACKAGES`; also read by scripts/test and
    cluster/gpu.yaml)."""
    lines = (line.strip() for line in EGL_PACKAGES.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


_VERTEX_SHADER = """
#version 330
uniform mat3 rot;          // R, uploaded row-major so that rot * v == v @ R
uniform vec3 trans;        // T
uniform float scale;       // 1 / dist (orthographic) or 1 (perspective)
uniform float focal;       // 1 / tan(fov / 2); 0 selects the orthographic projection
uniform float near;        // perspective: view z mapped to the near clipping plane
uniform float far;         // view z mapped to the far clipping plane
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_color;
out vec3 v_color;
out vec3 v_normal;
out vec3 v_pos;
void main() {
    vec3 p = rot * (in_pos * scale) + trans;
    v_normal = rot * in_normal;
    v_color = in_color;
    v_pos = p;
    if (focal > 0.0) {  // clip w = z: NDC z = a + b / z runs from -1 (z = near) to 1 (z = far)
        float a = (far + near) / (far - near);
        float b = -2.0 * far * near / (far - near);
        gl_Position = vec4(-focal * p.x, focal * p.y, a * p.z + b, p.z);
    } else {
        gl_Position = vec4(-p.x, p.y, 2.0 * p.z / far - 1.0, 1.0);
    }
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform vec3 light;        // unit direction towards the light, in view coordinates
uniform float ambient;
uniform float diffuse;
uniform float specular;
uniform float shininess;
uniform float focal;
in vec3 v_color;
in vec3 v_normal;
in vec3 v_pos;
out vec4 f_color;
void main() {
    vec3 to_eye = focal > 0.0 ? normalize(-v_pos) : vec3(0.0, 0.0, -1.0);
    vec3 n = normalize(v_normal);
    n = dot(n, to_eye) < 0.0 ? -n : n;
    float shade = ambient + diffuse * abs(dot(n, light));
    float highlight = specular * pow(max(dot(reflect(-light, n), to_eye), 0.0), shininess);
    f_color = vec4(clamp(v_color * shade + highlight, 0.0, 1.0), 1.0);
}
"""


def _preload_conflicting_llvm() -> None:
    """Load triton's bundled LLVM before Mesa's llvmpipe loads its own.

    Importing triton's C extension AFTER an llvmpipe EGL context exists segfaults (two LLVMs clash; torch
    imports triton lazily, e.g. from open_clip/torchvision). Loading triton first is safe in either order.
    """
    try:
        import triton._C.libtriton  # noqa: F401
    except ImportError:
        pass


def _as_numpy(x, dtype, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(dtype)


def _colours(colours, count: int, name: str) -> np.ndarray:
    """``(count, 3)`` float32 colours in [0, 1] from floats in [0, 1] or uint8 in [0, 255]."""
    arr = np.asarray(colours.detach().cpu().numpy() if isinstance(colours, torch.Tensor) else colours)
    if arr.shape != (count, 3):
        raise InputError(f"{name} must have shape ({count}, 3), got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise InputError(f"{name} must be uint8 or floats in [0, 1]; got range [{arr.min()}, {arr.max()}]")
    return arr


def _views(t) -> torch.Tensor:
    """A ``(V,)`` float32 CPU tensor of view angles or distances from a tensor, array, list or scalar."""
    return torch.as_tensor(t, dtype=torch.float32).reshape(-1).cpu()


def triangle_soup(
    vertices, faces, vertex_colors=None, face_colors=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Un-indexed triangles for flat shading: positions, face normals, colours, each ``(3F, 3)`` float32.

    ``vertices (V, 3)`` float, ``faces (F, 3)`` int indices; at most one of ``vertex_colors (V, 3)`` or
    ``face_colors (F, 3)`` (floats in [0, 1] or uint8); neither gives a uniform light grey.
    """
    v = _as_numpy(vertices, np.float32, "vertices")
    f = _as_numpy(faces, np.int64, "faces")
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise InputError(f"vertices must have shape (V, 3) with V > 0, got {v.shape}")
    if not np.isfinite(v).all():
        raise InputError("vertices contain NaN or infinite coordinates")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise InputError(f"faces must have shape (F, 3) with F > 0, got {f.shape}")
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(f"faces index vertices out of range [0, {len(v)}): min {f.min()}, max {f.max()}")
    if vertex_colors is not None and face_colors is not None:
        raise InputError("give vertex_colors or face_colors, not both")
    corners = v[f]  # (F, 3 corners, 3)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    if vertex_colors is not None:
        colours = _colours(vertex_colors, len(v), "vertex_colors")[f]
    elif face_colors is not None:
        colours = np.repeat(_colours(face_colors, len(f), "face_colors")[:, None], 3, axis=1)
    else:
        colours = np.full((len(f), 3, 3), 0.8, dtype=np.float32)
    flat = (len(f) * 3, 3)
    return corners.reshape(flat), np.repeat(normals, 3, axis=0).astype(np.float32), colours.reshape(flat)


def _direction(light) -> tuple[float, float, float]:
    """A unit 3-vector from a finite, non-zero ``light`` direction."""
    arr = np.asarray(light, dtype=np.float64)
    norm = float(np.linalg.norm(arr)) if arr.shape == (3,) and np.isfinite(arr).all() else 0.0
    if norm == 0.0:
        raise InputError(f"light must be a finite, non-zero 3-vector, got {light!r}")
    return tuple(float(c) for c in arr / norm)


class MeshRenderer:
    """Renders triangle meshes to ``(V, S, S, 3)`` uint8 RGB images at ``V`` views; one GL context, reused.

    ``projection`` is ``"orthographic"`` (mesh scaled by ``1/dist``) or ``"perspective"`` with a field of view
    of ``fov`` degrees (camera at ``dist``); see the module docstring. ``light`` is the direction towards the
    light in the camera frame (PyTorch3D's view axes: +x left, +y up, +z into the scene); ``ambient +
    diffuse`` is the brightness of a face lit head-on, ``specular`` and ``shininess`` shape the white
    highlight (0 = none). ``near`` (perspective) and ``far`` bound the visible view depths.
    """

    def __init__(
        self,
        image_size: int = 224,
        light: tuple[float, float, float] = (0.3, 0.5, -1.0),
        ambient: float = 0.45,
        diffuse: float = 0.55,
        far: float = 100.0,
        egl_device: int | None = None,
        projection: str = "orthographic",
        fov: float = RGB_FOV,
        specular: float = 0.0,
        shininess: float = 64.0,
        near: float = 0.01,
    ):
        if int(image_size) < 1:
            raise InputError(f"image_size must be a positive integer, got {image_size!r}")
        if projection not in _PROJECTIONS:
            raise InputError(
                f"projection={projection!r} is not allowed; use one of {', '.join(_PROJECTIONS)}"
            )
        if not 0.0 < fov < 180.0:
            raise InputError(f"fov must be in (0, 180) degrees, got {fov!r}")
        if not 0.0 < near < far:
            raise InputError(f"need 0 < near < far, got near={near!r}, far={far!r}")
        if min(ambient, diffuse, specular) < 0 or shininess <= 0:
            raise InputError(
                f"ambient, diffuse, specular must be >= 0 and shininess > 0; got {ambient}, {diffuse}, "
                f"{specular}, {shininess}"
            )
        self.image_size = int(image_size)
        self.projection = projection
        self.near, self.far = float(near), float(far)
        self.focal = 1.0 / math.tan(math.radians(fov) / 2) if projection == "perspective" else 0.0
        _preload_conflicting_llvm()
        import moderngl

        kwargs = {"backend": "egl"} if egl_device is None else {"backend": "egl", "device_index": egl_device}
        try:
            self._ctx = moderngl.create_standalone_context(**kwargs)
        except Exception as err:
            raise RuntimeError(
                f"headless OpenGL through EGL is unavailable ({err}). Mesh rendering needs Mesa's EGL (or a GPU "
                f"driver's EGL); on Debian/Ubuntu install: apt-get install {' '.join(egl_packages())}"
            ) from err
        self._prog = self._ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        uniforms = {
            "light": _direction(light),
            "ambient": ambient,
            "diffuse": diffuse,
            "specular": specular,
            "shininess": shininess,
            "focal": self.focal,
            "near": self.near,
            "far": self.far,
        }
        for name, value in uniforms.items():
            self._prog[name].value = value
        size = (self.image_size, self.image_size)
        self._fbo = self._ctx.framebuffer(
            color_attachments=[self._ctx.renderbuffer(size, 4)],
            depth_attachment=self._ctx.depth_renderbuffer(size),
        )

    def release(self) -> None:
        """Free the GL context (the renderer is unusable afterwards)."""
        with self._ctx:
            self._fbo.release()
            self._prog.release()
        self._ctx.release()

    def _view_depth(self, window: np.ndarray) -> np.ndarray:
        """View-space z ``(S, S)`` float32 from window depths in [0, 1] (1 = background -> -1)."""
        w = window.astype(np.float64)
        if self.projection == "perspective":  # invert NDC z = a + b / z
            n, f = self.near, self.far
            z = (-2.0 * f * n / (f - n)) / np.where(w < 1.0, 2.0 * w - 1.0 - (f + n) / (f - n), -1.0)
        else:
            z = w * self.far
        return np.where(w < 1.0, z, -1.0).astype(np.float32)

    def render(
        self,
        vertices,
        faces,
        azim: torch.Tensor,
        elev: torch.Tensor,
        dist: torch.Tensor,
        vertex_colors=None,
        face_colors=None,
        return_depth: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """RGB images ``(V, S, S, 3)`` uint8 of one mesh at ``V`` views ``azim, elev`` (degrees) and ``dist``
        (each ``(V,)``; with the perspective projection ``dist`` is the camera's distance from the origin).

        ``vertices (Vm, 3)``, ``faces (F, 3)`` and colours as in :func:`triangle_soup`. With ``return_depth``
        also the view-space depth ``(V, S, S)`` float32 of the nearest surface (-1 where nothing is drawn).
        """
        pos, normals, colours = triangle_soup(vertices, faces, vertex_colors, face_colors)
        azim, elev, dist = (_views(t) for t in (azim, elev, dist))
        if not (len(azim) == len(elev) == len(dist)) or len(azim) == 0:
            lengths = f"{len(azim)}, {len(elev)}, {len(dist)}"
            raise InputError(f"azim, elev, dist must be non-empty and of equal length (V,), got {lengths}")
        if (dist <= 0).any():
            raise InputError(f"dist must be positive, got {dist.tolist()}")
        rot, trans = view_transform(azim, elev, dist)
        data = np.concatenate([pos, normals, colours], axis=1).astype(np.float32)
        s = self.image_size
        images = np.empty((len(azim), s, s, 3), dtype=np.uint8)
        depths = np.empty((len(azim), s, s), dtype=np.float32) if return_depth else None
        with self._ctx:  # make this renderer's context current (several may exist)
            vbo = self._ctx.buffer(data.tobytes())
            vao = self._ctx.vertex_array(self._prog, [(vbo, "3f 3f 3f", "in_pos", "in_normal", "in_color")])
            self._fbo.use()
            self._ctx.enable(self._ctx.DEPTH_TEST)
            for k in range(len(azim)):
                self._prog["rot"].write(rot[k].numpy().astype(np.float32).tobytes())
                self._prog["trans"].value = tuple(trans[k].tolist())
                self._prog["scale"].value = 1.0 if self.focal else 1.0 / float(dist[k])
                self._fbo.clear(1.0, 1.0, 1.0, 1.0, depth=1.0)
                vao.render()
                rgb = np.frombuffer(self._fbo.read(components=3, alignment=1), dtype=np.uint8)
                images[k] = rgb.reshape(s, s, 3)[::-1]
                if depths is not None:
                    raw = self._fbo.read(attachment=-1, components=1, dtype="f4")
                    depths[k] = self._view_depth(np.frombuffer(raw, dtype=np.float32).reshape(s, s)[::-1])
            vao.release()
            vbo.release()
        return (images, depths) if return_depth else images


def rgb_renderer(image_size: int = 224, egl_device: int | None = None) -> MeshRenderer:
    """The RGB-render setting (module docstring): perspective, ``fov`` :data:`RGB_FOV`, a light near the
    camera (:data:`RGB_LIGHT`), PyTorch3D's default Phong intensities. Render at ``dist =``
    :data:`RGB_DISTANCE`."""
    return MeshRenderer(
        image_size,
        light=RGB_LIGHT,
        ambient=0.5,
        diffuse=0.3,
        specular=0.2,
        shininess=64.0,
        egl_device=egl_device,
        projection="perspective",
        fov=RGB_FOV,
    )
