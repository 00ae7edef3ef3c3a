"""Differentiable all-gather: contrastive negatives from the whole global batch across DDP workers."""

from __future__ import annotations

import torch
import torch.distributed as dist


class _GatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's ``(b, ...)`` tensor into ``(world * b, ...)`` in rank order, the local
    slice being the input itself. Backward: sum the incoming gradients over ranks (all-reduce) and return
    this rank's slice, because every rank's loss depends on this rank's rows."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local.contiguous())
        parts[rank] = local
        ctx.rank, ctx.rows = rank, local.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """All ranks' ``local (b, ...)`` tensors as one ``(world * b, ...)`` tensor (rank order), with gradient.

    Every rank then computes the loss of the global batch. Gradients reach each rank's own rows summed over
    the ranks' losses; as every rank's loss is the same global loss, DDP's gradient *average* then equals
    the gradient of one worker on the whole global batch (the balance ``s``, replicated on every rank, gets
    the same average). Every rank must pass the same ``b``. Without an initialised process group, or with
    one rank, returns ``local`` unchanged.
    """
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return local
    return _GatherWithGrad.apply(local)
