"""Zero-shot classification (SPEC.md section 3): mean over views of per-view cosine logits with the prompts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from clip2point.engine.features import extract_view_features
from clip2point.engine.metrics import Accuracy, accuracy
from clip2point.models.heads import zero_shot_logits
from clip2point.render.depth import DepthRenderer


def zero_shot_accuracy(
    view_features: torch.Tensor, labels: torch.Tensor, text_features: torch.Tensor, class_names: Sequence[str]
) -> Accuracy:
    """Accuracy of the zero-shot head on precomputed ``view_features (M, V, C)`` and ``labels (M,)``
    against prompt features ``text_features (K, C)``."""
    logits = zero_shot_logits(view_features, text_features.to(view_features))
    return accuracy(logits, labels, class_names)


def evaluate_zero_shot(
    encoder: nn.Module,
    text_features: torch.Tensor,
    class_names: Sequence[str],
    dataset: Dataset,
    renderer: DepthRenderer,
    views: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    progress: bool = True,
) -> Accuracy:
    """Zero-shot accuracy of ``encoder`` (CLIP's visual encoder or a pre-trained depth encoder) on
    ``dataset`` rendered at ``views`` (each ``(V,)``), with prompt features ``text_features (K, C)``."""
    features, labels = extract_view_features(
        encoder,
        renderer,
        dataset,
        views,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        progress=progress,
        desc="zero-shot",
    )
    return zero_shot_accuracy(features, labels, text_features, class_names)
