"""Pre-training losses (docs/method.md section 2): SimCLR NT-Xent and the learnable-balance objective."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from clip2point.errors import InputError


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """SimCLR NT-Xent over N pairs ``(a_i, b_i)``; ``a``, ``b`` are ``(N, C)`` with N >= 2.

    Both sides are L2-normalised; each of the 2N embeddings is an anchor whose positive is its partner
    and whose negatives are the other 2N - 2 embeddings; the loss is the cross-entropy of
    cosine / temperature, averaged over the 2N anchors (a scalar). Computed with log-softmax, so large
    ``1 / temperature`` does not overflow.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise InputError(
            f"nt_xent needs two (N, C) tensors of one shape; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    n = a.shape[0]
    if n < 2:
        raise InputError(f"nt_xent needs a batch of at least 2 pairs (else no negatives); got N={n}")
    if not temperature > 0:
        raise InputError(f"nt_xent temperature must be > 0; got {temperature}")
    z = F.normalize(torch.cat([a, b]).float(), dim=-1)
    sim = (z @ z.T) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    partner = torch.arange(2 * n, device=z.device).roll(n)  # n .. 2n-1, 0 .. n-1
    return F.cross_entropy(sim, partner)


class PretrainLoss(NamedTuple):
    """The objective's parts (scalars); ``intra`` is None for the cross-only variant."""

    total: torch.Tensor
    intra: torch.Tensor | None
    cross: torch.Tensor


class PretrainObjective(nn.Module):
    """CLIP2Point pre-training loss with the learnable balance ``s`` (initialised to 1).

    ``intra=True``: ``L = L_intra / s^2 + L_cross + log(s + 1)`` with ``L_intra = NTXent(F1, F2)`` and
    ``L_cross = NTXent((F1 + F2) / 2, F_I)``. ``intra=False`` (ablation "w/o intra"): ``L = L_cross`` with
    ``L_cross = NTXent(F_D, F_I)`` on one undistorted depth view, and no ``s``.
    """

    def __init__(self, intra: bool = True, temperature: float = 0.07):
        super().__init__()
        self.intra = intra
        self.temperature = temperature
        self.s = nn.Parameter(torch.ones(())) if intra else None

    def forward(
        self, image: torch.Tensor, depth1: torch.Tensor, depth2: torch.Tensor | None = None
    ) -> PretrainLoss:
        """``image`` ``(N, C)`` from the frozen image encoder; ``depth1`` (and ``depth2`` when ``intra``)
        ``(N, C)`` from the depth encoder at the two augmented distances."""
        if self.intra != (depth2 is not None):
            raise InputError(
                "PretrainObjective(intra=True) needs depth features of both distances (depth1, depth2); "
                "intra=False takes one undistorted view (depth1 only)"
            )
        if depth2 is None:
            cross = nt_xent(depth1, image, self.temperature)
            return PretrainLoss(cross, None, cross)
        intra = nt_xent(depth1, depth2, self.temperature)
        cross = nt_xent((depth1 + depth2) / 2, image, self.temperature)
        total = intra / self.s**2 + cross + torch.log(self.s + 1)
        return PretrainLoss(total, intra, cross)
