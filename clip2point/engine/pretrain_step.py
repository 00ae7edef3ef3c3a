"""One pre-training step's maths (docs/method.md section 2): render the view pair, encode, contrast.

Independent of Ray: the per-worker loop (:mod:`clip2point.engine.pretrain_worker`) wraps
:class:`DepthImageContrast` in DDP; tests run it in plain processes. Nothing here reads a device value
back to the host or waits for a host-to-device copy, so on a GPU the host queues step after step without
waiting; the epoch's losses are summed on the device (:func:`loss_terms`) and read once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from clip2point.engine.gather import gather_with_grad
from clip2point.models.losses import PretrainLoss, PretrainObjective
from clip2point.render.cameras import jitter_distance
from clip2point.render.depth import DepthRenderer


class Replay(NamedTuple):
    """What a micro batch back-propagates in the last pass of a gradient-cached step
    (:mod:`clip2point.engine.grad_cache`): ``feature_grad (m, K, C)``, the loss's gradient with respect to the
    micro batch's depth features, and ``objective_grads``, the gradients of the objective's trainable
    parameters (``s``) for the micro batch that adds them (empty for the others)."""

    feature_grad: torch.Tensor
    objective_grads: tuple[torch.Tensor, ...] = ()


class DepthImageContrast(nn.Module):
    """The trainable part of pre-training: the depth encoder ``E_d`` and the objective (with its ``s``).

    ``forward(depth_images (b, K, 3, S, S), image_features (b, C)) -> PretrainLoss``: K = 2 distance-jittered
    depth maps per sample with the intra loss, K = 1 undistorted map without it. ``global_negatives``:
    gather features from every DDP rank (:func:`gather_with_grad`) so the contrastive negatives are the whole
    global batch; otherwise each rank contrasts within its own ``b`` samples. ``forward(depth_images,
    replay=Replay(...))`` is a gradient-cached step's last pass over one micro batch (through DDP, so that
    DDP reduces its gradients): the scalar ``sum(features * feature_grad) + sum(p * grad_p)`` over the
    objective's parameters ``p``, whose gradient is exactly the cached one.
    """

    def __init__(self, depth_encoder: nn.Module, objective: PretrainObjective, global_negatives: bool = True):
        super().__init__()
        self.depth_encoder = depth_encoder
        self.objective = objective
        self.global_negatives = global_negatives

    def forward(
        self,
        depth_images: torch.Tensor,
        image_features: torch.Tensor | None = None,
        replay: Replay | None = None,
    ) -> PretrainLoss | torch.Tensor:
        if replay is None:
            return self.contrast(self.encode(depth_images), image_features)
        surrogate = (self.encode(depth_images) * replay.feature_grad).sum()
        for p, grad in zip(self.objective_parameters(), replay.objective_grads, strict=False):
            surrogate = surrogate + (p * grad).sum()
        return surrogate

    def encode(self, depth_images: torch.Tensor) -> torch.Tensor:
        """Depth features ``(b, K, C)`` float32 of ``depth_images (b, K, 3, S, S)``."""
        b, k = depth_images.shape[:2]
        return self.depth_encoder(depth_images.flatten(0, 1)).float().view(b, k, -1)

    def contrast(self, depth: torch.Tensor, image_features: torch.Tensor) -> PretrainLoss:
        """The objective of depth features ``(b, K, C)`` against ``image_features (b, C)`` (gathered from every
        rank first with global negatives)."""
        k = depth.shape[1]
        image = image_features.float()
        if self.global_negatives:
            depth, image = gather_with_grad(depth), gather_with_grad(image)
        if k == 2:
            return self.objective(image, depth[:, 0], depth[:, 1])
        return self.objective(image, depth[:, 0])

    def objective_parameters(self) -> list[nn.Parameter]:
        """The objective's trainable parameters (``[s]`` with the intra loss, none without)."""
        return [p for p in self.objective.parameters() if p.requires_grad]


def distance_factors(
    global_batch: int, rank: int, world: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's two distance-jitter factors ``(b,)`` each, ``b = global_batch / world``.

    Factors for the whole global batch are drawn from ``generator`` (same state on every rank) and rank
    ``r`` takes rows ``r, r + world, ...``: the rows that ``DistributedSampler`` deals to it. So each sample
    gets the same jitter whatever the number of workers.
    """
    f1, f2 = jitter_distance(torch.ones(global_batch), generator)
    return f1[rank::world], f2[rank::world]


def rows_in_micro_batches(
    fn: Callable[..., torch.Tensor], micro_batch: int, *tensors: torch.Tensor
) -> torch.Tensor:
    """``fn(*tensors)`` computed on ``micro_batch`` rows of every tensor at a time, written into one output
    ``(b, ...)``: only one micro batch's temporaries are alive at once. ``fn`` must treat rows independently
    (rendering, a frozen encoder in eval mode) and run without gradients; ``micro_batch >= b``: one call."""
    b = tensors[0].shape[0]
    if micro_batch >= b:
        return fn(*tensors)
    out = None
    for start in range(0, b, micro_batch):
        rows = min(micro_batch, b - start)
        part = fn(*(t[start : start + rows] for t in tensors))
        if part.shape[0] != rows:
            raise ValueError(f"rows_in_micro_batches: {fn} gave {part.shape[0]} rows for {rows}")
        if out is None:
            out = part.new_empty((b, *part.shape[1:]))
        out[start : start + rows] = part
    return out


def render_pair(
    renderer: DepthRenderer,
    points: torch.Tensor,
    azim: torch.Tensor,
    elev: torch.Tensor,
    dist: torch.Tensor,
    factors: tuple[torch.Tensor, torch.Tensor] | None,
    micro_batch: int | None = None,
) -> torch.Tensor:
    """Depth maps of each cloud at its own view: ``points (b, N, 3)``, ``azim``/``elev``/``dist`` ``(b,)``
    (degrees; distance). With ``factors`` (two ``(b,)`` tensors, e.g. on the CPU) the two jittered
    distances give ``(b, 2, 3, S, S)``; with None the undistorted view gives ``(b, 1, 3, S, S)``.
    ``micro_batch``: render that many clouds at a time (:func:`rows_in_micro_batches`; the same depth maps,
    call it without gradients); None: all at once.

    The values are not checked (``check_values=False``: no host sync): the pre-training pairs dataset
    checks its clouds and gives official views; shapes are checked."""
    if micro_batch is not None:
        return rows_in_micro_batches(
            lambda p, a, e, d, *f: render_pair(renderer, p, a, e, d, f or None),
            micro_batch, points, azim, elev, dist, *(factors or ()),
        )  # fmt: skip
    if factors is None:
        return renderer(points, azim[:, None], elev[:, None], dist[:, None], check_values=False)
    f1, f2 = (f.to(dist, non_blocking=True) for f in factors)
    pair = torch.stack([dist * f1, dist * f2], dim=1)
    return renderer(
        points, azim[:, None].expand(-1, 2), elev[:, None].expand(-1, 2), pair, check_values=False
    )


def loss_terms(loss: PretrainLoss) -> torch.Tensor:
    """The step's ``(total, intra, cross)`` losses as one detached ``(3,)`` float64 tensor on their device
    (intra 0 without the intra loss): summed over an epoch on the device and read once, instead of an
    ``.item()`` per step that waits for the device."""
    intra = loss.intra if loss.intra is not None else torch.zeros_like(loss.cross)
    return torch.stack([loss.total, intra, loss.cross]).detach().double()
