"""Pictures of what the encoder sees: grids of views, one row per rendering setting (the paper's Fig. 4)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from clip2point.plots import pyplot, save_figure
from clip2point.render.cameras import Views
from clip2point.render.depth import DepthRenderer, official_normalise


def depth_gray(renderer: DepthRenderer, points: torch.Tensor, views: Views) -> np.ndarray:
    """Gray depth images ``(V, S, S)`` in [0, 1] of one cloud ``points (N, 3)`` at ``views``: official
    normalisation, before the encoder's mean/std (near surfaces dark, far ones light, empty space white)."""
    raw = renderer.raw_depth(points.unsqueeze(0), *views)[0]  # (V, S, S)
    return official_normalise(raw.flatten(-2)).view(raw.shape).cpu().numpy()


def save_view_grid(
    rows: Sequence[tuple[str, np.ndarray]],
    path: str | Path,
    view_titles: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG grid: one row per ``(label, images)``, one column per view.

    ``images`` is ``(V, H, W)`` gray or ``(V, H, W, 3)`` RGB, float in [0, 1] or uint8. Every row must have the
    same V. Returns the path written.
    """
    plt = pyplot()
    num_views = {len(images) for _, images in rows}
    if len(num_views) != 1:
        raise ValueError(f"every row needs the same number of views, got {sorted(num_views)}")
    cols = num_views.pop()
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.6 * cols + 1.4, 1.6 * len(rows) + 0.6), squeeze=False
    )
    for r, (label, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            image = images[c]
            ax.imshow(
                image,
                cmap="gray" if image.ndim == 2 else None,
                vmin=0,
                vmax=1 if image.dtype != np.uint8 else 255,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and view_titles is not None:
                ax.set_title(view_titles[c], fontsize=8)
        axes[r][0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def view_titles(views: Views) -> list[str]:
    """Column titles ``"e=<elev> a=<azim>"`` (degrees) of ``(V,)`` views."""
    return [f"e={e:g} a={a:g}" for a, e in zip(views.azim.tolist(), views.elev.tolist(), strict=True)]
