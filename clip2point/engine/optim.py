"""The pre-training optimiser, as ``pretrain.optimizer`` names it (docs/method.md section 2).

- ``lamb``: :class:`clip2point.engine.lamb.Lamb`, the authors' optimiser (torch-optimizer's ``Lamb(params,
  lr=..., weight_decay=...)`` with the package's defaults: betas (0.9, 0.999), eps 1e-6, no Adam bias
  correction, no gradient clipping, and per tensor the step ``lr * min(||w||, 10) / ||u|| * u`` with
  ``u = m / (sqrt(v) + eps) + weight_decay * w``), bit for bit on the CPU, without its host syncs.
- ``timm_lamb``: timm's ``Lamb`` with its defaults: Adam bias correction, the global gradient norm clipped
  to 1.0 and the step ``lr * ||w|| / ||u|| * u`` without the cap at 10. For a ViT-B/32 matrix with
  ``||w|| = 30`` its steps are three times as long.

Both take every parameter in one group; parameters without a gradient (a frozen encoder) are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from clip2point.config import PretrainConfig
from clip2point.engine.lamb import Lamb


def build_optimizer(settings: PretrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser ``settings.optimizer`` over ``params`` with ``settings.lr`` and ``settings.weight_decay``."""
    if settings.optimizer == "lamb":
        return Lamb(params, lr=settings.lr, weight_decay=settings.weight_decay)
    from timm.optim import Lamb as TimmLamb

    return TimmLamb(params, lr=settings.lr, weight_decay=settings.weight_decay)
