"""LAMB as the authors' pre-training uses it, in foreach kernels that never make the host wait for the GPU.

The arithmetic is torch-optimizer 0.3.0's ``Lamb`` with its defaults (no Adam bias correction, no gradient
clipping, the weight norm capped at 10), step for step and bit for bit on the CPU. Per parameter tensor
``w`` with gradient ``g``, at every step::

    m <- b1 m + (1 - b1) g            v <- b2 v + (1 - b2) g^2
    u  = m / (sqrt(v) + eps) + weight_decay * w
    r  = min(||w||, 10) / ||u||        (1 where either norm is 0)
    w <- w - lr * r * u

torch-optimizer decides ``r = 1`` with a Python ``if`` on the two norms and passes ``lr * r`` as a Python
number, which makes the host wait for the device three times per tensor (459 waits per step for a
ViT-B/32 depth encoder's 153 tensors, measured by ``benchmarks/gpu_check.py``). Here the norms of all tensors of one
device and dtype are stacked, the ratios are chosen with ``torch.where`` on the device and the update is
one ``_foreach_addcmul_`` with the ratios as 0-dim device tensors. The optimiser state has the same
layout as torch-optimizer's (an integer ``step``, ``exp_avg``, ``exp_avg_sq``, ``weight_norm``,
``adam_norm``, ``trust_ratio``), so a checkpoint written by either loads into both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import torch

CLAMP_VALUE = 10.0  # torch-optimizer's cap on ||w|| in the trust ratio
# On the CPU the tensors are stepped in runs of about this many elements (4 MiB of float32), so that the
# temporaries of a run stay in the cache; on a GPU all of a device's tensors are one run (fewest launches).
CPU_CHUNK_ELEMENTS = 2**20


def chunks(params: list[torch.Tensor], elements: int | None) -> list[list[torch.Tensor]]:
    """``params`` cut, in order, into runs of at least one tensor and at most ``elements`` elements where a
    tensor fits (``None``: one run)."""
    if elements is None:
        return [params]
    runs: list[list[torch.Tensor]] = [[]]
    size = 0
    for p in params:
        if runs[-1] and size + p.numel() > elements:
            runs.append([])
            size = 0
        runs[-1].append(p)
        size += p.numel()
    return runs


class Lamb(torch.optim.Optimizer):
    """LAMB over ``params`` with torch-optimizer's defaults; ``lr`` and ``weight_decay`` as the authors set them.

    Every parameter with a gradient is stepped; those without one (a frozen encoder) are skipped, like
    torch-optimizer does. Sparse gradients are refused.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0.0:
            raise ValueError(f"Lamb: lr must be > 0, got {lr}")
        if eps < 0.0:
            raise ValueError(f"Lamb: eps must be >= 0, got {eps}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Lamb: betas must lie in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"Lamb: weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.clamp_value = CLAMP_VALUE

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            by_kind: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                by_kind[(p.device, p.dtype)].append(p)
            for (device, _), params in by_kind.items():
                for chunk in chunks(params, CPU_CHUNK_ELEMENTS if device.type == "cpu" else None):
                    self._step_tensors(group, chunk)
        return loss

    def _step_tensors(self, group: dict, params: list[torch.Tensor]) -> None:
        """One step of the tensors ``params``, all on one device with one dtype."""
        beta1, beta2 = group["betas"]
        states = [self.state[p] for p in params]
        for p, state in zip(params, states, strict=True):
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
        grads = [p.grad for p in params]
        exp_avg = [s["exp_avg"] for s in states]
        exp_avg_sq = [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(exp_avg, beta1)
        torch._foreach_add_(exp_avg, grads, alpha=1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        denominator = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_add_(denominator, group["eps"])
        adam_step = torch._foreach_div(exp_avg, denominator)
        if group["weight_decay"] != 0:
            torch._foreach_add_(adam_step, params, alpha=group["weight_decay"])
        weight_norm = torch.stack(torch._foreach_norm(params)).clamp(0, self.clamp_value)
        adam_norm = torch.stack(torch._foreach_norm(adam_step))
        degenerate = (weight_norm == 0) | (adam_norm == 0)
        trust_ratio = torch.where(degenerate, 1.0, weight_norm / adam_norm)
        scale = trust_ratio * -group["lr"]  # lr * r as torch-optimizer computes it: in the tensor's dtype
        torch._foreach_addcmul_(params, adam_step, list(scale.unbind()))
        kept = zip(states, weight_norm.unbind(), adam_norm.unbind(), trust_ratio.unbind(), strict=True)
        for state, *norms in kept:  # 0-dim views: no kernel per tensor
            state["weight_norm"], state["adam_norm"], state["trust_ratio"] = norms
