"""A pre-training step's forward and backward with the contrastive batch independent of memory.

``pretrain.batch_size`` is the set of negatives; ``pretrain.micro_batch`` how many samples a worker pushes
through the depth encoder at once. With the micro batch equal to the worker's batch (the default),
:func:`contrastive_backward` is the one-pass step: forward, then backward of the loss. Smaller, it caches
gradients (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"):

1. the depth features ``(b, K, C)`` of every micro batch without keeping activations (``no_grad``), the RNG
   state saved before each micro batch;
2. the loss of the whole batch on those features (gathered from every worker with global negatives, as in
   one pass) and its gradient with respect to the features and to the objective's ``s``;
3. every micro batch again with gradients, from its saved RNG state, back-propagating its rows of the cached
   feature gradient; the last one also back-propagates ``s``'s, so that it counts once. Under DDP the micro
   batches before the last run in ``no_sync``: one all-reduce per step, as in one pass.

The gradients equal the one-pass step's up to float rounding (the encoder's sums run over micro batches);
the cost is one more depth-encoder forward per step, the memory that of one micro batch's activations.
What a step computes before, row by row without gradients (the depth maps' rendering, the frozen image
encoder), runs in micro batches too (:func:`~clip2point.engine.pretrain_step.rows_in_micro_batches`), so that its transient memory does not
grow with the batch either.
Randomness in the encoder (dropout, stochastic depth) replays: pass 3 restores the RNG state pass 1 saw
(CPU, and the GPU's on CUDA); CLIP's ViTs draw none. Batch statistics (BatchNorm: the toy CLIP's ResNet,
RN50) are those of each micro batch, as each DDP worker's are of its own batch: the gradient is exact for
that forward, not equal to one pass's; the running statistics move once per micro batch (pass 1's moves
are undone).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from clip2point.engine.pretrain_step import DepthImageContrast, Replay
from clip2point.models.losses import PretrainLoss

RngState = tuple[torch.Tensor, torch.Tensor | None]


def contrastive_backward(
    trainable: nn.Module,
    depth_images: torch.Tensor,
    image_features: torch.Tensor,
    micro_batch: int,
    precision: Callable[[], AbstractContextManager] = nullcontext,
) -> PretrainLoss:
    """Forward and backward of one step: add the loss's parameter gradients to ``.grad``; return the loss.

    ``trainable``: a :class:`DepthImageContrast`, or DDP around one. ``depth_images (b, K, 3, S, S)``,
    ``image_features (b, C)``: this worker's samples. ``micro_batch``: samples per depth-encoder pass (the
    last may be smaller); ``>= b`` is the one-pass step. ``precision()``: a fresh context for each forward
    (autocast or none); backward runs outside it.
    """
    if micro_batch >= depth_images.shape[0]:
        with precision():
            loss = trainable(depth_images, image_features)
        loss.total.backward()
        return loss
    ddp = isinstance(trainable, nn.parallel.DistributedDataParallel)
    model: DepthImageContrast = trainable.module if ddp else trainable
    chunks = depth_images.split(micro_batch)
    features, states = encode_without_activations(model, chunks, precision)
    features.requires_grad_(True)
    with precision():
        loss = model.contrast(features, image_features)
    feature_grad, *objective_grads = torch.autograd.grad(
        loss.total, [features, *model.objective_parameters()]
    )
    for i, (chunk, cached) in enumerate(zip(chunks, feature_grad.split(micro_batch), strict=True)):
        last = i == len(chunks) - 1
        set_rng_state(states[i], chunk.device)
        with trainable.no_sync() if ddp and not last else nullcontext(), precision():
            surrogate = trainable(chunk, replay=Replay(cached, tuple(objective_grads) if last else ()))
        surrogate.backward()
    return PretrainLoss(*(t if t is None else t.detach() for t in loss))


def encode_without_activations(
    model: DepthImageContrast,
    chunks: tuple[torch.Tensor, ...],
    precision: Callable[[], AbstractContextManager],
) -> tuple[torch.Tensor, list[RngState]]:
    """Pass 1: the depth features ``(b, K, C)`` of all ``chunks`` (micro batches ``(m, K, 3, S, S)``) under
    ``no_grad``, and the RNG state before each; the encoder's buffers (running statistics) are left as found,
    so that pass 3 moves them once."""
    buffers = [b.clone() for b in model.depth_encoder.buffers()]
    states, features = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(rng_state(chunk.device))
            with precision():
                features.append(model.encode(chunk))
        for kept, b in zip(buffers, model.depth_encoder.buffers(), strict=True):
            b.copy_(kept)
    return torch.cat(features), states


def rng_state(device: torch.device) -> RngState:
    """The global RNG state of the CPU and, when ``device`` is a GPU, of that GPU (no wait for it)."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_rng_state(state: RngState, device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
