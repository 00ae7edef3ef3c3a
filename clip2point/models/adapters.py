"""Few-shot adapters on per-view features ``(B, V, C)`` (docs/method.md section 4): the global-view aggregator
(paper and official variants), PointCLIP's inter-view adapter and the Gated Dual-Path Adapter (GDPA)."""

from __future__ import annotations

import typing

import torch
import torch.nn.functional as F
from torch import nn

from clip2point.errors import ConfigError, InputError
from clip2point.models.heads import cosine_logits
from clip2point.settings import AdapterSettings, Variant

OFFICIAL_DROPOUT = 0.075
OFFICIAL_VIEW_WEIGHT = 0.5
OFFICIAL_ADAPTED_SHARE = 0.6  # PointCLIP's adapter ratio: 0.6 adapted + 0.4 input features


def _check_views(x: torch.Tensor, views: int, dim: int) -> None:
    if x.ndim != 3 or x.shape[1:] != (views, dim):
        raise InputError(f"expected per-view features (B, {views}, {dim}); got shape {tuple(x.shape)}")


class GlobalViewAggregator(nn.Module):
    """``g``: per-view features ``(B, V, C)`` -> one global feature ``(B, C)``.

    ``paper`` (Eq. 12): concat -> Linear(V*C, C) -> ReLU -> Linear(C, C).
    ``official`` (the authors' SimplifiedAdapter): per-view weights (init 0.5) scale each view, BatchNorm
    over each view's C features, Dropout(0.075), concat, Linear(V*C, C), BatchNorm1d(C), ReLU,
    Dropout(0.075), Linear(C, C).
    """

    def __init__(self, views: int, dim: int, variant: Variant = "paper"):
        super().__init__()
        if variant not in typing.get_args(Variant):
            raise ConfigError(
                f"adapter variant {variant!r} is not allowed; expected one of 'paper', 'official'"
            )
        official = variant == "official"
        self.views, self.dim, self.variant = views, dim, variant
        self.view_weights = nn.Parameter(torch.full((views,), OFFICIAL_VIEW_WEIGHT)) if official else None
        self.view_norm = nn.BatchNorm1d(dim) if official else nn.Identity()
        self.dropout = nn.Dropout(OFFICIAL_DROPOUT) if official else nn.Identity()
        self.fc1 = nn.Linear(views * dim, dim)
        self.norm = nn.BatchNorm1d(dim) if official else nn.Identity()
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_views(x, self.views, self.dim)
        if self.view_weights is not None:
            x = x * self.view_weights.view(1, -1, 1)
        b = x.shape[0]
        x = self.dropout(self.view_norm(x.reshape(b * self.views, self.dim)).reshape(b, -1))
        return self.fc2(self.dropout(F.relu(self.norm(self.fc1(x)))))


class InterViewAdapter(nn.Module):
    """PointCLIP's inter-view adapter: ``(B, V, C)`` -> adapted per-view features ``(B, V, C)``.

    Both forms compute a global feature ``G`` with :class:`GlobalViewAggregator` of the same variant and
    expand it back to the views with one C x C matrix ``W_v`` per view (``expand``).
    ``paper`` (Eq. 2-3): ``F^_v = ReLU(W_v G)``, output ``F_v + F^_v``.
    ``official`` (PointCLIP's few-shot trainer): ``F^_v = ReLU(W_v ReLU(G) + b_v)``, output
    ``0.6 F^_v + 0.4 F_v``; :class:`GDPA` then scores the concatenated views (:func:`view_logits`).
    """

    def __init__(self, views: int, dim: int, variant: Variant = "paper"):
        super().__init__()
        self.views, self.dim, self.variant = views, dim, variant
        self.globals = GlobalViewAggregator(views, dim, variant)
        # rows v*C:(v+1)*C hold W_v; PointCLIP's layer has a bias, the equations have none
        self.expand = nn.Linear(dim, views * dim, bias=variant == "official")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.globals(x)
        if self.variant == "paper":
            return x + F.relu(self.expand(g)).view(-1, self.views, self.dim)
        adapted = F.relu(self.expand(F.relu(g))).view(-1, self.views, self.dim)
        return OFFICIAL_ADAPTED_SHARE * adapted + (1 - OFFICIAL_ADAPTED_SHARE) * x


def view_logits(features: torch.Tensor, text: torch.Tensor, variant: Variant) -> torch.Tensor:
    """Logits ``(B, K)`` of per-view features ``(B, V, C)`` against text ``(K, C)``: ``paper`` the mean over
    views of the per-view cosines; ``official`` (PointCLIP's trainer) the cosine of the views concatenated
    ``(B, V*C)`` with the text feature repeated V times ``(K, V*C)``."""
    if variant == "paper":
        return cosine_logits(features, text).mean(dim=1)
    return cosine_logits(features.flatten(1), text.repeat(1, features.shape[1]))


class GDPA(nn.Module):
    """Gated Dual-Path Adapter with the ablation switches of :class:`AdapterSettings`; returns cosine
    logits ``(B, K)`` (no scale).

    - ``path``: ``single`` (depth features only) or ``dual`` (depth and CLIP features, one adapter each).
    - ``aggregator``: ``global`` (:class:`GlobalViewAggregator`, logits ``cos(G, T_k)``) or ``inter_view``
      (:class:`InterViewAdapter`, logits of its per-view features by :func:`view_logits`).
    - ``fusion`` (dual path): ``gate`` ``G = s_g * G_C + G_D`` with a learnable scalar ``s_g`` (paper Eq. 14);
      ``none`` ``G = G_C + G_D`` (paper without gate); ``average`` ``(G_D + G_C) / 2`` (the authors' code).
      Under cosine logits ``none`` and ``average`` give the same logits.
    - ``variant``: ``paper`` or ``official`` form of the aggregator (and of the inter-view logits).
    """

    def __init__(self, views: int, dim: int, settings: AdapterSettings | None = None, gate_init: float = 1.0):
        super().__init__()
        settings = settings or AdapterSettings()
        self.settings = settings

        def make() -> nn.Module:
            if settings.aggregator == "global":
                return GlobalViewAggregator(views, dim, settings.variant)
            return InterViewAdapter(views, dim, settings.variant)

        self.depth_adapter = make()
        self.clip_adapter = make() if settings.path == "dual" else None
        self.gate = nn.Parameter(torch.tensor(float(gate_init))) if settings.fusion == "gate" else None

    def forward(
        self, depth_features: torch.Tensor, text: torch.Tensor, clip_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``depth_features`` (and ``clip_features`` on the dual path) ``(B, V, C)``; ``text`` ``(K, C)``."""
        if (clip_features is not None) != (self.clip_adapter is not None):
            raise InputError(
                f"GDPA path '{self.settings.path}' takes CLIP view features only on the dual path"
            )
        rep = self.depth_adapter(depth_features)
        if self.clip_adapter is not None:
            rep_clip = self.clip_adapter(clip_features)
            if self.gate is not None:
                rep = self.gate * rep_clip + rep
            elif self.settings.fusion == "average":
                rep = (rep + rep_clip) / 2
            else:
                rep = rep + rep_clip
        if self.settings.aggregator == "global":
            return cosine_logits(rep, text)
        return view_logits(rep, text, self.settings.variant)
