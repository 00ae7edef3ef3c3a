"""A whole Dual-Path Adapter model in one module: the frozen depth (and CLIP) encoders feeding a GDPA, the
layout of the authors' DPA checkpoint (``best_test.pth``). What ``import-official --kind dpa`` converts,
:func:`~clip2point.models.load_dpa` loads and ``evaluate-dpa`` scores; few-shot training itself runs the
adapter on cached per-view features (:mod:`clip2point.engine.fewshot`) and does not build it."""

from __future__ import annotations

import torch
from torch import nn

from clip2point.errors import InputError
from clip2point.models.adapters import GDPA
from clip2point.models.backbone import FrozenEncoder
from clip2point.models.heads import encode_views


class FewShotClassifier(nn.Module):
    """View images ``(B, V, 3, S, S)`` and text features ``(K, C)`` -> logits ``(B, K)``.

    Both encoders are frozen (:class:`FrozenEncoder`); only the adapter (and its gate) learns. The CLIP
    encoder is given exactly when the adapter is dual-path.
    """

    def __init__(self, depth_encoder: nn.Module, adapter: GDPA, clip_encoder: nn.Module | None = None):
        super().__init__()
        if (clip_encoder is not None) != (adapter.clip_adapter is not None):
            raise InputError(
                f"adapter path '{adapter.settings.path}' needs a CLIP encoder exactly when it is dual"
            )
        self.depth = FrozenEncoder(depth_encoder)
        self.clip = FrozenEncoder(clip_encoder) if clip_encoder is not None else None
        self.adapter = adapter

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        depth = encode_views(self.depth, images)
        clip = encode_views(self.clip, images) if self.clip is not None else None
        return self.adapter(depth, text, clip)
