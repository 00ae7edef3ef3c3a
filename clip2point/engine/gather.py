"""Contrastive negatives from the whole global batch across DDP workers: a differentiable all-gather."""

from __future__ import annotations

import torch
import torch.distributed as dist


class _GatherWithGrad(torch.autograd.Function):
    """All-gather ``(b, ...)`` -> ``(world * b, ...)`` whose backward hands each rank the sum, over all
    ranks, of the gradients of its own rows: a reduce-scatter, done as one all-reduce of the whole gradient
    and a slice (gloo has no reduce-scatter; the gradient is only ``world * b`` embeddings)."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        local = local.contiguous()
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local)
        ctx.rows = local.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()  # all_reduce works in place
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """All ranks' ``local (b, ...)`` tensors as one ``(world * b, ...)`` tensor (rank order), with gradient.

    Every rank then computes the loss of the global batch. The gather's backward sums the gradients of each
    rank's rows over the ranks' losses (as ``torch.distributed.nn.functional.all_gather`` did, which torch
    deprecates); as every rank's loss is the same global loss, DDP's gradient *average* then equals the
    gradient of one worker on the whole global batch (the balance ``s``, replicated on every rank, gets the
    same average). Every rank must pass the same ``b``. Without an initialised process group, or with one
    rank, returns ``local`` unchanged.
    """
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return local
    return _GatherWithGrad.apply(local)
