"""Point sampling: area-weighted mesh surface sampling, farthest point sampling, random subsets, unit-sphere
normalisation.

Units are those of the input coordinates. Clouds are ``(N, 3)`` or batched ``(B, N, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from clip2point.errors import InputError

Seed = int | Sequence[int] | np.random.Generator
KERNEL_EXCLUSION = 1e-3  # pointnet2_ops' FPS kernel never picks a point with |p|^2 <= this after the first


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Areas ``(F,)`` float64 of the triangles ``faces (F, 3)`` indexing ``vertices (V, 3)``."""
    tri = np.asarray(vertices, dtype=np.float64)[faces]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, num_points: int, seed: Seed = 0, source: str = "mesh"
) -> np.ndarray:
    """``num_points`` points ``(num_points, 3)`` float32 drawn uniformly from the surface of a triangle mesh.

    Triangles are chosen with probability proportional to their area; inside a triangle ``(a, b, c)``
    the point is ``(1 - sqrt(u)) a + sqrt(u) (1 - v) b + sqrt(u) v c`` with ``u, v ~ U(0, 1)``, which is
    uniform over its area. ``seed`` is an int, a sequence of ints (e.g. ``(seed, sample_index)``) or a
    numpy Generator; the same seed gives the same points. Errors name ``source``.
    """
    if num_points < 1:
        raise InputError(f"{source}: num_points must be >= 1, got {num_points}")
    faces = np.asarray(faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise InputError(f"{source}: cannot sample a surface from a mesh without triangles ({faces.shape})")
    areas = triangle_areas(vertices, faces)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        raise InputError(f"{source}: mesh surface area is {total}; cannot sample points from it")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    chosen = rng.choice(len(faces), size=num_points, p=areas / total)
    u, v = rng.random((2, num_points, 1))
    su = np.sqrt(u)
    tri = np.asarray(vertices, dtype=np.float64)[faces[chosen]]
    points = (1 - su) * tri[:, 0] + su * (1 - v) * tri[:, 1] + su * v * tri[:, 2]
    return points.astype(np.float32)


def farthest_point_sample(
    points: torch.Tensor, num_samples: int, exclude_below: float | None = None
) -> torch.Tensor:
    """Farthest point sampling: indices ``(B, num_samples)`` int64 into ``points (B, N, 3)``.

    Deterministic: the first pick is index 0 of every cloud; each next pick is the not yet picked point
    with the largest squared distance to the picked set (ties: the lowest index, as ``argmax`` returns),
    so the indices of a cloud are distinct even when it holds duplicate points.
    ``exclude_below``: as the authors' CUDA kernel (pointnet2_ops ``furthest_point_sample``, which skips
    points with ``|p|^2 <= 1e-3``), points with a squared norm at most this are never picked after the first
    pick; when no candidate is left the kernel's answer, index 0, is repeated.
    Vectorised over the batch and the points (one step per sample); runs on the input's device.
    """
    if points.ndim != 3 or points.shape[-1] != 3:
        raise InputError(f"farthest_point_sample expects points (B, N, 3), got {tuple(points.shape)}")
    b, n, _ = points.shape
    if not 1 <= num_samples <= n:
        raise InputError(f"farthest_point_sample: cannot pick {num_samples} of {n} points; need 1 <= M <= N")
    indices = torch.zeros(b, num_samples, dtype=torch.long, device=points.device)
    nearest = torch.full((b, n), float("inf"), dtype=points.dtype, device=points.device)
    if exclude_below is not None:
        nearest[(points**2).sum(-1) <= exclude_below] = -1.0  # never a candidate
    batch = torch.arange(b, device=points.device)
    current = torch.zeros(b, dtype=torch.long, device=points.device)
    for i in range(num_samples):
        indices[:, i] = current
        d = ((points - points[batch, current].unsqueeze(1)) ** 2).sum(-1)
        nearest = torch.minimum(nearest, d)
        nearest[batch, current] = -1.0  # never pick a point twice, even among duplicates
        best, current = nearest.max(-1)
        current = torch.where(best < 0, 0, current)  # no candidate left (excluded points only): index 0
    return indices


def normalize_unit_sphere(points: torch.Tensor) -> torch.Tensor:
    """Centre and scale each cloud into the unit sphere: ``p <- (p - mean) / max ||p - mean||``.

    ``points (..., N, 3)``; the mean and the scale are per cloud. A cloud whose points all coincide
    (scale 0), an empty cloud or a non-finite one raises :class:`InputError`.
    """
    check_points(points)
    centred = points - points.mean(dim=-2, keepdim=True)
    scale = centred.norm(dim=-1).amax(dim=-1, keepdim=True).unsqueeze(-1)
    if (scale <= 0).any():
        raise InputError("normalize_unit_sphere: a cloud has all its points at one location (radius 0)")
    return centred / scale


def check_points(points: torch.Tensor, source: str = "points") -> None:
    """Raise :class:`InputError` naming ``source`` unless ``points (..., N, 3)`` has N >= 1 and is finite."""
    if points.ndim < 2 or points.shape[-1] != 3:
        raise InputError(f"{source}: expected points (..., N, 3), got shape {tuple(points.shape)}")
    if points.shape[-2] == 0:
        raise InputError(f"{source}: the point cloud is empty")
    numpy = points.device.type == "cpu" and points.dtype in (torch.float32, torch.float64)  # 10x faster
    finite = np.isfinite(points.detach().numpy()).all() if numpy else torch.isfinite(points).all()
    if not finite:
        raise InputError(f"{source}: the point cloud contains NaN or inf coordinates")


def resample(
    points: torch.Tensor,
    num_points: int,
    allow_repeat: bool = False,
    source: str = "points",
    exclude_below: float | None = None,
) -> torch.Tensor:
    """A cloud ``(N, 3)`` reduced to exactly ``num_points`` points ``(num_points, 3)``.

    More points than asked: farthest point sampling (deterministic, starts at index 0; ``exclude_below``
    as :func:`farthest_point_sample`). Exactly as
    many: returned unchanged. Fewer: :class:`InputError` naming ``source`` -- unless ``allow_repeat``,
    in which case the cloud is padded by cycling through its points (indices ``0, 1, ..., N-1, 0, ...``).
    """
    check_points(points, source)
    n = points.shape[0]
    if n > num_points:
        return points[farthest_point_sample(points.unsqueeze(0), num_points, exclude_below)[0]]
    if n == num_points:
        return points
    if not allow_repeat:
        raise InputError(f"{source}: the cloud has {n} points, fewer than the {num_points} asked for")
    return points[torch.arange(num_points, device=points.device) % n]


def random_subset(
    points: torch.Tensor, num_points: int, rng: np.random.Generator, source: str = "points"
) -> torch.Tensor:
    """``num_points`` distinct points ``(num_points, 3)`` of a cloud ``(N, 3)``, chosen at random: the first
    ``num_points`` indices of ``rng.permutation(N)``, in that order (the authors' pre-training sampling,
    with a seeded generator instead of numpy's global one). Fewer than ``num_points`` points:
    :class:`InputError` naming ``source``."""
    check_points(points, source)
    n = points.shape[0]
    if n < num_points:
        raise InputError(f"{source}: the cloud has {n} points, fewer than the {num_points} asked for")
    return points[torch.from_numpy(rng.permutation(n)[:num_points])]
