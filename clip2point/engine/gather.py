"""Contrastive negatives from the whole global batch across DDP workers: a differentiable all-gather."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """All ranks' ``local (b, ...)`` tensors as one ``(world * b, ...)`` tensor (rank order), with gradient.

    Every rank then computes the loss of the global batch. torch's differentiable ``all_gather`` sums the
    gradients of each rank's rows over the ranks' losses; as every rank's loss is the same global loss,
    DDP's gradient *average* then equals the gradient of one worker on the whole global batch (the balance
    ``s``, replicated on every rank, gets the same average). Every rank must pass the same ``b``. Without an
    initialised process group, or with one rank, returns ``local`` unchanged.
    """
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return local
    return torch.cat(all_gather(local))
