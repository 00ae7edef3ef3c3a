"""Point clouds -> multi-view depth maps (docs/method.md sections 1.1-1.4), batched and vectorised in torch.

The pipeline for a batch of clouds ``points (B, N, 3)`` and views ``azim, elev, dist`` of shape ``(V,)`` or
``(B, V)`` (degrees, degrees, world units):

1. project: view-space coordinates ``(B, V, N, 3)`` through the look-at cameras of
   :mod:`clip2point.render.cameras`; orthographic (official: cloud scaled by ``1/dist``, NDC x, y = view x, y)
   or perspective (NDC = view x, y divided by ``z * tan(fov/2)``). The depth of a point is its view-space z;
   points with z < 0 are ignored.
2. rasterise: each point covers a footprint of pixels -- ``disk`` (official: pixel centres strictly inside an
   NDC circle of radius ``radius``) or ``square`` (paper Eq. 9: ``ceil(u + k)``, k = -R/2 .. R/2 - 1, in both
   axes, for dilation R).
3. reduce: per pixel the ``minimum`` z of the covering points (paper Eq. 10, official) or the ``weighted``
   value ``sum(z/(z+eps)) / sum(1/(z+eps))`` (paper Eq. 8, PointCLIP). Uncovered pixels are background.
4. normalise (only in ``__call__``): the official per-image normalisation, 3 channels, then the encoder's
   mean/std (:class:`ImageNorm`, carried by each backbone).

Pixel ``(row i, col j)`` of an S x S image has its centre at NDC ``xf = 1 - (2j + 1)/S`` (+X points left),
``yf = 1 - (2i + 1)/S`` (+Y points up), PyTorch3D's convention; its continuous pixel coordinate is
``u = (1 - xf) * S/2 - 0.5`` (so a point exactly on a pixel centre has ``u = j``).

Every step is one tensor operation over all points of all views: no Python loop over points or pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from clip2point.errors import InputError
from clip2point.render.cameras import view_transform
from clip2point.settings import RenderSettings

FOREGROUND_SCALE = 200.0 / 255.0  # official normalisation: the farthest foreground depth maps to 200/255
BACKGROUND_RAW = -1.0  # raw depth of an uncovered pixel (PyTorch3D's zbuf convention)
WEIGHTED_EPS = 1e-12


@dataclass(frozen=True)
class ImageNorm:
    """Per-channel mean and std (RGB, for images in [0, 1]) that an image encoder expects its input
    standardised with. Each backbone carries its own (:attr:`clip2point.models.ClipBundle.norm`)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std as ``(3,)`` tensors of ``like``'s dtype and device (copied without waiting for
        the device: no host sync)."""
        return tuple(
            torch.tensor(values, dtype=like.dtype).to(like.device, non_blocking=True)
            for values in (self.mean, self.std)
        )


# OpenAI CLIP's preprocessing, that of the paper's ViT-B/32 (and the bundled toy CLIP).
OPENAI_CLIP_NORM = ImageNorm((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


class DepthRenderer:
    """Render point clouds to depth maps at given views.

    Args:
        image_size: S, the side of the square output in pixels (the encoder's input size).
        settings: footprint, depth value, projection (:class:`RenderSettings`; its ``views`` is not used
            here: views are passed per call). ``changes`` replace single fields, e.g. ``dilation=4``.
        norm: the encoder's mean/std that :meth:`__call__` standardises with.

    Example::

        azim, elev, dist = official_views(10)
        r = DepthRenderer(224, footprint="square", dilation=2)
        raw = r.raw_depth(points, azim, elev, dist)   # (B, V, S, S), background -1
        imgs = r(points, azim, elev, dist)            # (B, V, 3, S, S), ready for a CLIP encoder
    """

    def __init__(
        self,
        image_size: int = 224,
        settings: RenderSettings | None = None,
        *,
        norm: ImageNorm = OPENAI_CLIP_NORM,
        **changes,
    ) -> None:
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
            raise InputError(f"image_size={image_size!r} must be a positive integer")
        self.image_size = image_size
        self.settings = replace(settings or RenderSettings(), **changes)
        self.norm = norm

    def __repr__(self) -> str:
        return f"DepthRenderer({self.image_size}, {self.settings.label()!r})"

    # ------------------------------------------------------------------ public API
    def raw_depth(
        self,
        points: torch.Tensor,
        azim: torch.Tensor,
        elev: torch.Tensor,
        dist: torch.Tensor,
        *,
        check_values: bool = True,
    ) -> torch.Tensor:
        """Per-pixel view-space depth ``(B, V, S, S)``; background pixels are -1. ``check_values``: as in
        :meth:`__call__`."""
        points, azim, elev, dist = _check_inputs(points, azim, elev, dist, check_values)
        batch, views, s = points.shape[0], azim.shape[1], self.image_size
        channels = (
            1 if self.settings.depth == "minimum" else 2
        )  # weighted needs a second plane for its denominator
        size = batch * views * channels * s * s
        flat = torch.empty(size + 1, device=points.device)  # the last element collects undrawn candidates
        depth = self._rasterise(points, azim, elev, dist, flat, channels, spare=size)
        return depth.masked_fill_(depth == math.inf, BACKGROUND_RAW).reshape(batch, views, s, s)

    def __call__(
        self,
        points: torch.Tensor,
        azim: torch.Tensor,
        elev: torch.Tensor,
        dist: torch.Tensor,
        out: torch.Tensor | None = None,
        *,
        check_values: bool = True,
    ) -> torch.Tensor:
        """Depth images ``(B, V, 3, S, S)`` after the official normalisation and the encoder's mean/std.

        ``out``: an optional contiguous float32 ``(B, V, 3, S, S)`` tensor on the points' device to write
        into (and return), as in ``torch``'s ``out=`` arguments. Reusing one buffer across batches saves the
        cost of touching freshly allocated memory, which dominates on CPU at S = 224.

        ``check_values=False`` skips the checks of the values (finite coordinates, positive distances),
        which read the device's answer back to the host: a wait for the device on a GPU. For training loops
        whose inputs were checked where they were made (every dataset checks its clouds). Shapes, dtypes and
        devices are always checked.
        """
        points, azim, elev, dist = _check_inputs(points, azim, elev, dist, check_values)
        batch, views, s = points.shape[0], azim.shape[1], self.image_size
        shape = (batch, views, 3, s, s)
        if out is None:
            out = torch.empty(shape, device=points.device)
        elif out.shape != shape or out.dtype != torch.float32 or not out.is_contiguous():
            raise InputError(
                f"out must be a contiguous float32 tensor of shape {shape}, got {tuple(out.shape)} {out.dtype}"
            )
        elif out.device != points.device:
            raise InputError(f"out is on {out.device} but points are on {points.device}")
        flat = out.view(-1)
        # Undrawn candidates go to the last element (channel 2), which normalisation overwrites last.
        depth = self._rasterise(points, azim, elev, dist, flat, 3, spare=flat.numel() - 1)
        _normalise_into(out.view(batch * views, 3, s * s), depth, self.norm)
        return out

    def project(
        self, points: torch.Tensor, azim: torch.Tensor, elev: torch.Tensor, dist: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where each point lands: NDC x, y and view-space depth z in every view, each ``(B, V, N)``
        (step 1 of the module docstring; pixel ``(i, j)`` has its centre at NDC
        ``(1 - (2j + 1)/S, 1 - (2i + 1)/S)``)."""
        return self._project(*_check_inputs(points, azim, elev, dist))

    # ------------------------------------------------------------------ internals
    def _rasterise(self, points, azim, elev, dist, flat, channels, spare) -> torch.Tensor:
        """Rasterise into the canvas ``flat[:B*V*channels*S*S]`` viewed as ``(B*V, channels, S*S)``.

        Returns the canvas's depth plane ``[:, 0]`` ``(B*V, S*S)``, +inf where no point is drawn. The weighted
        mode accumulates its denominator in plane ``[:, 1]``. Candidates that are not drawn are all sent to
        the element ``flat[spare]``, which must lie after every canvas pixel and which the caller must not
        read.
        """
        batch, views = points.shape[0], azim.shape[1]
        num_images, pixels = batch * views, self.image_size**2
        canvas = flat[: num_images * channels * pixels].view(num_images, channels, pixels)
        x, y, z = self._project(points, azim, elev, dist)  # each (B, V, N)
        index = self._footprint(x, y, z, channels * pixels, spare).reshape(-1)
        value = z.unsqueeze(-1).expand(*z.shape, index.numel() // z.numel()).reshape(-1)
        depth = canvas[:, 0]
        if self.settings.depth == "minimum":
            depth.fill_(math.inf)
            flat.scatter_reduce_(0, index, value, "amin")
            return depth
        inv = 1.0 / (value + WEIGHTED_EPS)
        denominator = canvas[:, 1]
        canvas[:, :2].zero_()
        flat.index_add_(0, index, value * inv)
        flat.index_add_(0, (index + pixels).clamp_max_(spare), inv)
        depth.div_(denominator)
        return depth.masked_fill_(denominator <= 0, math.inf)

    def _project(self, points, azim, elev, dist) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """NDC x, y and view-space depth z of every point in every view, each ``(B, V, N)``."""
        rot, trans = view_transform(azim, elev, dist)  # (B, V, 3, 3), (B, V, 3)
        if self.settings.projection == "orthographic":
            scaled = points.unsqueeze(1) / dist[..., None, None]  # (B, V, N, 3)
            view = scaled @ rot + trans.unsqueeze(2)
            return view[..., 0], view[..., 1], view[..., 2]
        view = points.unsqueeze(1) @ rot + trans.unsqueeze(2)
        z = view[..., 2]
        focal = 1.0 / math.tan(math.radians(self.settings.fov) / 2)
        # Points at z <= 0 are dropped later; avoid dividing by zero for them here.
        safe_z = torch.where(z > 0, z, torch.ones_like(z))
        return view[..., 0] * focal / safe_z, view[..., 1] * focal / safe_z, z

    def _footprint(self, x, y, z, image_stride: int, spare: int) -> torch.Tensor:
        """Canvas index of every candidate pixel of every point, ``(B, V, N, P)``; ``spare`` where not drawn.

        Image ``k = b * V + v`` starts at canvas index ``k * image_stride``; pixel ``(row, col)`` of it is at
        ``row * S + col`` after that. Separable: candidate rows ``(B, V, N, R)`` and columns ``(B, V, N, R)``
        combine into ``P = R * R`` candidates (the disk: :meth:`_disk_candidates`). Out-of-image rows/columns
        (and points behind the camera) are pushed past ``spare`` first and clamped onto it at the end, so no
        boolean mask over all candidates is needed.
        """
        s = self.image_size
        batch, views = x.shape[:2]
        u = (1 - x) * (s / 2) - 0.5  # continuous column
        v = (1 - y) * (s / 2) - 0.5  # continuous row
        image = torch.arange(batch * views, device=x.device).view(batch, views, 1, 1) * image_stride
        if self.settings.footprint == "disk":
            return self._disk_candidates(x, y, z, u, v, image, spare)
        first, count = -(self.settings.dilation // 2), self.settings.dilation
        cols = torch.ceil(u).unsqueeze(-1) + _offsets(first, count, u)
        rows = torch.ceil(v).unsqueeze(-1) + _offsets(first, count, v)
        beyond = spare + 1
        row_ok = (rows >= 0) & (rows < s) & (z >= 0).unsqueeze(-1)
        row_start = torch.where(row_ok, rows.long() * s + image, beyond)  # (B, V, N, R)
        col = torch.where((cols >= 0) & (cols < s), cols.long(), beyond)  # (B, V, N, R)
        index = row_start.unsqueeze(-1) + col.unsqueeze(-2)  # (B, V, N, R, R)
        return index.clamp_max_(spare).flatten(-2)

    def _disk_candidates(self, x, y, z, u, v, image, spare) -> torch.Tensor:
        """The disk footprint's candidate indices ``(B, V, N, P)``, ``spare`` where not drawn.

        A pixel centre within ``reach = radius * S/2`` pixels of a point is at most ``ceil(reach + 0.5) - 1``
        rows/columns from the pixel the point falls in (``round(u)``), so that window is a superset; the
        exact test is then the spec's, in NDC: ``dx^2 + dy^2 < r^2``. Out-of-image rows/columns and points
        behind the camera get an infinite ``dy^2``/``dx^2``, so one comparison decides everything.
        """
        s = self.image_size
        half = math.ceil(self.settings.radius * s / 2 + 0.5) - 1
        cols = torch.round(u).unsqueeze(-1) + _offsets(-half, 2 * half + 1, u)  # (B, V, N, W)
        rows = torch.round(v).unsqueeze(-1) + _offsets(-half, 2 * half + 1, v)
        dx2 = (1 - (2 * cols + 1) / s - x.unsqueeze(-1)).square_()
        dy2 = (1 - (2 * rows + 1) / s - y.unsqueeze(-1)).square_()
        dx2.masked_fill_((cols < 0) | (cols >= s), math.inf)
        dy2.masked_fill_((rows < 0) | (rows >= s) | (z < 0).unsqueeze(-1), math.inf)
        inside = (dy2.unsqueeze(-1) + dx2.unsqueeze(-2)) < self.settings.radius**2  # (B, V, N, W, W)
        index = (rows.long() * s + image).unsqueeze(-1) + cols.long().unsqueeze(-2)
        return torch.where(inside, index, spare).flatten(-2)


def _offsets(first: int, count: int, like: torch.Tensor) -> torch.Tensor:
    """Integer offsets ``first .. first + count - 1`` as a float tensor on ``like``'s device."""
    return torch.arange(first, first + count, dtype=like.dtype, device=like.device)


def official_normalise(raw: torch.Tensor) -> torch.Tensor:
    """The official per-image normalisation of raw depth ``(..., P)`` (background -1) to gray ``(..., P)``.

    ``mx = max(D)``; background set to 1; ``mn = min(D)``; foreground ``(D - mn) / mx * 200/255``;
    background 1. So near surfaces are dark, far ones lighter, empty space white. An image with no
    foreground is all 1. (A foreground whose maximum depth is 0 would divide by zero in the official code;
    here ``mx`` is floored at 1e-12, giving 0 for such pixels.)
    """
    covered = raw != BACKGROUND_RAW
    mx = raw.amax(dim=-1, keepdim=True)
    mn = torch.where(covered, raw, 1.0).amin(dim=-1, keepdim=True)
    gray = (raw - mn) / mx.clamp_min(1e-12) * FOREGROUND_SCALE
    return torch.where(covered, gray, 1.0)


def to_clip_input(gray: torch.Tensor, norm: ImageNorm = OPENAI_CLIP_NORM) -> torch.Tensor:
    """Gray images ``(..., P)`` in [0, 1] -> 3 channels ``(..., 3, P)`` standardised with ``norm``."""
    mean, std = norm.tensors(gray)
    return (gray.unsqueeze(-2) - mean.unsqueeze(-1)) / std.unsqueeze(-1)


def _normalise_into(canvas: torch.Tensor, depth: torch.Tensor, norm: ImageNorm) -> None:
    """:func:`official_normalise` then :func:`to_clip_input`, fused, written into ``canvas (M, 3, P)``.

    ``depth`` is ``canvas[:, 0]``, +inf on the background, >= 0 elsewhere. Per image the gray value is the
    affine map ``gray = D * alpha + beta`` on the foreground and 1 on the background; background pixels are
    given the depth that the same map sends to 1, so that each output channel is one affine map of it:
    ``out_c = D * (alpha / std_c) + (beta - mean_c) / std_c``. Few full passes over memory: this is the
    cost that dominates at S = 224.
    """
    mn = depth.amin(dim=-1)  # min over the foreground (+inf if there is none)
    has_background = depth.amax(dim=-1) == math.inf
    mx = torch.nan_to_num(depth, posinf=BACKGROUND_RAW, out=canvas[:, 1]).amax(dim=-1)
    has_foreground = torch.isfinite(mn)
    mn = torch.where(has_background, mn.clamp_max(1.0), mn)  # background counts as 1 in the min
    # With a foreground, mn <= mx, so |D * alpha + beta| stays below 2 and float32 rounding below 2e-7.
    # Without one, alpha = 0 and beta = 1 make every pixel gray 1.
    alpha = torch.where(has_foreground, FOREGROUND_SCALE / mx.clamp_min(1e-12), 0.0)
    beta = torch.where(has_foreground, -mn * alpha, 1.0)
    # The depth mapped to gray 1 is mn + 1/alpha = mn + mx * 255/200 > mx (depths are >= 0): clamping at it
    # sends the +inf background there and leaves every foreground depth as it is.
    ceiling = torch.where(has_foreground, (1.0 - beta) / alpha, 0.0)
    torch.minimum(depth, ceiling.unsqueeze(-1), out=depth)
    mean, std = norm.tensors(depth)
    scale = (alpha.unsqueeze(-1) / std).unsqueeze(-1)  # (M, 3, 1)
    shift = ((beta.unsqueeze(-1) - mean) / std).unsqueeze(-1)
    torch.addcmul(shift[:, 1:], depth.unsqueeze(1), scale[:, 1:], out=canvas[:, 1:])
    torch.addcmul(shift[:, 0], depth, scale[:, 0], out=depth)


def _check_inputs(
    points, azim, elev, dist, values: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validated float32 points ``(B, N, 3)`` and views broadcast to ``(B, V)``; ``values`` False checks
    shapes, dtypes and devices only (no host sync)."""
    points = _check_points(points, values)
    return (points, *_check_views(points, azim, elev, dist, values))


def _check_points(points: torch.Tensor, values: bool) -> torch.Tensor:
    if not isinstance(points, torch.Tensor):
        raise InputError(f"points must be a torch.Tensor of shape (B, N, 3), got {type(points).__name__}")
    if points.dim() != 3 or points.shape[-1] != 3:
        raise InputError(f"points must have shape (B, N, 3), got {tuple(points.shape)}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise InputError(
            f"points is empty: shape {tuple(points.shape)} (need B >= 1 clouds of N >= 1 points)"
        )
    if not points.is_floating_point():
        raise InputError(f"points must be a floating-point tensor, got dtype {points.dtype}")
    points = points.float()
    if not values:
        return points
    finite = torch.isfinite(points).all(dim=-1)
    if not finite.all():
        bad = (~finite).nonzero()[0].tolist()
        raise InputError(f"points has non-finite coordinates, first at cloud {bad[0]}, point {bad[1]}")
    return points


def _check_views(points, azim, elev, dist, values: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Broadcast view parameters to ``(B, V)`` float32 on the points' device."""
    batch = points.shape[0]
    out = []
    for name, value in (("azim", azim), ("elev", elev), ("dist", dist)):
        value = torch.as_tensor(value, dtype=torch.float32, device=points.device)
        if value.dim() == 1:
            value = value.unsqueeze(0).expand(batch, -1)
        if value.dim() != 2 or value.shape[0] != batch or value.shape[1] == 0:
            raise InputError(
                f"{name} must have shape (V,) or (B, V) with B={batch} and V >= 1, got {tuple(value.shape)}"
            )
        if values and not torch.isfinite(value).all():
            raise InputError(f"{name} has non-finite values")
        out.append(value)
    if len({v.shape for v in out}) != 1:
        raise InputError(f"azim, elev and dist disagree in shape: {[tuple(v.shape) for v in out]}")
    if values and (out[2] <= 0).any():
        raise InputError("dist must be > 0 for every view")
    return out[0], out[1], out[2]
