"""One pre-training step's maths (docs/method.md section 2): render the view pair, encode, contrast.

Independent of Ray: the per-worker loop (:mod:`clip2point.engine.pretrain_worker`) wraps
:class:`DepthImageContrast` in DDP; tests run it in plain processes. Nothing here reads a device value
back to the host or waits for a host-to-device copy, so on a GPU the host queues step after step without
waiting; the epoch's losses are summed on the device (:func:`loss_terms`) and read once.
"""

from __future__ import annotations

import torch
from torch import nn

from clip2point.engine.gather import gather_with_grad
from clip2point.models.losses import PretrainLoss, PretrainObjective
from clip2point.render.cameras import jitter_distance
from clip2point.render.depth import DepthRenderer


class DepthImageContrast(nn.Module):
    """The trainable part of pre-training: the depth encoder ``E_d`` and the objective (with its ``s``).

    ``forward(depth_images (b, K, 3, S, S), image_features (b, C)) -> PretrainLoss``: K = 2 distance-jittered
    depth maps per sample with the intra loss, K = 1 undistorted map without it. ``global_negatives``:
    gather features from every DDP rank (:func:`gather_with_grad`) so the contrastive negatives are the whole
    global batch; otherwise each rank contrasts within its own ``b`` samples.
    """

    def __init__(self, depth_encoder: nn.Module, objective: PretrainObjective, global_negatives: bool = True):
        super().__init__()
        self.depth_encoder = depth_encoder
        self.objective = objective
        self.global_negatives = global_negatives

    def forward(self, depth_images: torch.Tensor, image_features: torch.Tensor) -> PretrainLoss:
        b, k = depth_images.shape[:2]
        depth = self.depth_encoder(depth_images.flatten(0, 1)).float().view(b, k, -1)
        image = image_features.float()
        if self.global_negatives:
            depth, image = gather_with_grad(depth), gather_with_grad(image)
        if k == 2:
            return self.objective(image, depth[:, 0], depth[:, 1])
        return self.objective(image, depth[:, 0])


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


def render_pair(
    renderer: DepthRenderer,
    points: torch.Tensor,
    azim: torch.Tensor,
    elev: torch.Tensor,
    dist: torch.Tensor,
    factors: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """Depth maps of each cloud at its own view: ``points (b, N, 3)``, ``azim``/``elev``/``dist`` ``(b,)``
    (degrees; distance). With ``factors`` (two ``(b,)`` tensors, e.g. on the CPU) the two jittered
    distances give ``(b, 2, 3, S, S)``; with None the undistorted view gives ``(b, 1, 3, S, S)``.

    The values are not checked (``check_values=False``: no host sync): the pre-training pairs dataset
    checks its clouds and gives official views; shapes are checked."""
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
