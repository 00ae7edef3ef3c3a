"""From multi-view images to class logits: view encoding, cosine logits, the zero-shot head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clip2point.errors import InputError


def encode_views(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images ``(B, V, 3, S, S)`` -> per-view features ``(B, V, C)`` (encoder sees ``(B*V, 3, S, S)``)."""
    if images.ndim != 5:
        raise InputError(f"expected view images (B, V, 3, S, S); got shape {tuple(images.shape)}")
    b, v = images.shape[:2]
    return encoder(images.flatten(0, 1)).reshape(b, v, -1)


def cosine_logits(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of features ``(..., C)`` with text features ``(K, C)`` -> ``(..., K)``, no scale."""
    if features.shape[-1] != text.shape[-1] or text.ndim != 2:
        raise InputError(
            f"features (..., C) and text features (K, C) must share C; got {tuple(features.shape)} "
            f"and {tuple(text.shape)}"
        )
    return F.normalize(features, dim=-1) @ F.normalize(text.to(features.dtype), dim=-1).T


def zero_shot_logits(view_features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Zero-shot head (docs/method.md section 3): per-view features ``(B, V, C)`` -> the mean over views of the
    per-view cosine logits, ``(B, K)``."""
    if view_features.ndim != 3:
        raise InputError(f"expected per-view features (B, V, C); got shape {tuple(view_features.shape)}")
    return cosine_logits(view_features, text).mean(dim=1)
