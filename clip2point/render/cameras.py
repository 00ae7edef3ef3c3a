"""Cameras and view sets (docs/method.md section 1.1), in PyTorch3D's look-at convention.

Row-vector convention throughout: ``x_view = x_world @ R + T`` with ``R`` of shape ``(..., 3, 3)`` whose
columns are the camera's x, y, z axes in world coordinates and ``T = -C @ R`` for camera centre ``C``.
Angles are in degrees, computed in float32 exactly as the official (PyTorch3D) code does, so the top and
bottom views (elev = 90 / 270) come out as that formula gives them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from clip2point.errors import InputError

# Official view sets: (elev, azim) in degrees, dist = 1 for every view.
_OFFICIAL_VIEWS = {
    10: ((0, 90, 180, 270, 225, 225, 315, 315, 0, 0), (0, 0, 0, 0, -45, 45, -45, 45, -90, 90)),
    6: ((0, 0, 0, 0, 90, -90), (0, 90, 180, 270, 0, 180)),
}

_NORMALIZE_EPS = 1e-5  # PyTorch3D's floor on the norm in look_at_rotation
_DEGENERATE_ATOL = 5e-3  # x axis this close to 0 in every component -> rebuilt from y and z


class Views(NamedTuple):
    """A set of V cameras: ``azim``, ``elev`` (degrees) and ``dist`` (world units), each ``(V,)`` (the same
    views for every cloud) or ``(B, V)`` (per cloud). Unpacks as ``azim, elev, dist = views``."""

    azim: torch.Tensor
    elev: torch.Tensor
    dist: torch.Tensor

    @property
    def num_views(self) -> int:
        """V, the number of cameras."""
        return int(self.azim.shape[-1])


def official_views(num_views: int = 10) -> Views:
    """The official view set, each field a ``(V,)`` float32 tensor.

    ``num_views`` is 10 (pre-training, zero-/few-shot) or 6 (the cube faces).
    """
    if num_views not in _OFFICIAL_VIEWS:
        raise InputError(f"num_views={num_views!r} is not an official view set; allowed: 6, 10")
    elev, azim = _OFFICIAL_VIEWS[num_views]
    azim_t = torch.tensor(azim, dtype=torch.float32)
    elev_t = torch.tensor(elev, dtype=torch.float32)
    return Views(azim_t, elev_t, torch.ones(num_views, dtype=torch.float32))


def camera_centre(azim: torch.Tensor, elev: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Camera centres ``(..., 3)`` on the sphere of radius ``dist`` for angles in degrees (same shapes)."""
    a = (math.pi / 180.0) * azim
    e = (math.pi / 180.0) * elev
    return torch.stack(
        [dist * torch.cos(e) * torch.sin(a), dist * torch.sin(e), dist * torch.cos(e) * torch.cos(a)], -1
    )


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(_NORMALIZE_EPS)


def look_at_rotation(centre: torch.Tensor) -> torch.Tensor:
    """Rotation ``(..., 3, 3)`` (columns: camera x, y, z axes) of cameras at ``centre (..., 3)`` looking at 0.

    World up is +Y. Where the x axis degenerates (camera straight above or below), it is rebuilt as
    ``normalize(cross(y, z))`` from the y axis computed with the degenerate x, as PyTorch3D does.
    """
    up = torch.zeros_like(centre)
    up[..., 1] = 1.0  # filled on the centres' device: no host-to-device copy
    z = _normalize(-centre)
    x = _normalize(torch.linalg.cross(up, z, dim=-1))
    y = _normalize(torch.linalg.cross(z, x, dim=-1))
    degenerate = (x.abs() <= _DEGENERATE_ATOL).all(dim=-1, keepdim=True)
    x = torch.where(degenerate, _normalize(torch.linalg.cross(y, z, dim=-1)), x)
    return torch.stack([x, y, z], dim=-1)


def view_transform(
    azim: torch.Tensor, elev: torch.Tensor, dist: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-to-view transform ``(R (..., 3, 3), T (..., 3))`` with ``x_view = x_world @ R + T``."""
    centre = camera_centre(azim, elev, dist)
    rot = look_at_rotation(centre)
    trans = -(centre.unsqueeze(-2) @ rot).squeeze(-2)
    return rot, trans


def jitter_distance(
    dist: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently jittered copies of ``dist`` (any shape): ``dist * (1 + (u - 0.5) / 5)``, u ~ U(0, 1).

    The intra-modality pair of pre-training (docs/method.md section 1.5): the same view at +-10% distance.
    """
    u1 = torch.rand(dist.shape, generator=generator, dtype=dist.dtype, device=dist.device)
    u2 = torch.rand(dist.shape, generator=generator, dtype=dist.dtype, device=dist.device)
    return dist * (1 + (u1 - 0.5) / 5), dist * (1 + (u2 - 0.5) / 5)


def axis_rotation(axis: str, degrees: float) -> torch.Tensor:
    """Right-handed rotation matrix ``(3, 3)`` about ``axis`` ('x', 'y' or 'z') by ``degrees``."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    mats = {
        "x": [[1, 0, 0], [0, c, -s], [0, s, c]],
        "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
        "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]],
    }
    if axis not in mats:
        raise InputError(f"axis={axis!r} is not allowed; use 'x', 'y' or 'z'")
    return torch.tensor(mats[axis], dtype=torch.float32)


def align_modelnet(points: torch.Tensor) -> torch.Tensor:
    """ModelNet "rot" alignment: ``points (..., 3) @ Rx(+90) @ Ry(-90)`` (points as row vectors)."""
    rot = axis_rotation("x", 90.0) @ axis_rotation("y", -90.0)
    return points @ rot.to(points)
