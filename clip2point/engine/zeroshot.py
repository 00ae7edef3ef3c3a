"""Zero-shot classification (SPEC.md section 3): mean over views of per-view cosine logits with the prompts."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from clip2point.config import ExperimentConfig
from clip2point.engine.data import dataset_from_config
from clip2point.engine.features import extract_view_features, resolve_device
from clip2point.engine.metrics import Accuracy, accuracy, save_confusion_png
from clip2point.models import PromptCache, load_clip, load_depth_encoder
from clip2point.models.heads import zero_shot_logits
from clip2point.render import official_views
from clip2point.render.depth import DepthRenderer
from clip2point.render.preview import depth_gray, save_view_grid, view_titles
from clip2point.tracking import Tracker, project_root


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


def run_zero_shot(
    config: ExperimentConfig,
    *,
    depth_encoder: str | Path | None = None,
    split: str = "test",
    out_dir: str | Path | None = None,
    track: bool = True,
    progress: bool = True,
) -> Accuracy:
    """The ``clip2point zeroshot`` experiment: ``config.data.dataset`` rendered with ``config.render``, encoded
    by CLIP's visual encoder (``depth_encoder`` None) or a pre-trained depth encoder file, scored against
    the class prompts. Writes ``confusion.png`` and ``views.png`` (the first sample's depth maps) to
    ``out_dir`` (default ``<project>/runs/zeroshot/<dataset>``) and, with ``track``, logs params, accuracy,
    per-class accuracy and both pictures to MLflow."""
    device = resolve_device(config.device)
    bundle = load_clip(config.model.name, config.model.pretrained, device)
    encoder = bundle.visual if depth_encoder is None else load_depth_encoder(bundle, depth_encoder).to(device)
    dataset = dataset_from_config(config, split)
    renderer = DepthRenderer.from_config(replace(config.render, image_size=bundle.image_size))
    views = official_views(config.render.views)
    out = Path(out_dir) if out_dir else project_root() / "runs" / "zeroshot" / config.data.dataset
    out.mkdir(parents=True, exist_ok=True)
    encoder_label = (
        "CLIP visual encoder" if depth_encoder is None else f"depth encoder {Path(depth_encoder).name}"
    )
    tracker = (
        Tracker.start(
            config,
            f"zeroshot-{config.data.dataset}",
            tags={"encoder": encoder_label, "split": split, "dataset_fingerprint": dataset.fingerprint()},
        )
        if track
        else None
    )
    with tracker.active() if tracker else nullcontext():
        text = PromptCache().features(bundle.text, dataset.class_names)
        result = evaluate_zero_shot(
            encoder, text, dataset.class_names, dataset, renderer, views, device=device, progress=progress
        )
        title = f"{config.data.dataset} {split}, {encoder_label}"
        save_confusion_png(result, out / "confusion.png", title=title)
        sample = dataset[0]["points"].to(device)
        save_view_grid(
            [(f"{config.render.depth} {config.render.footprint}", depth_gray(renderer, sample, *views))],
            out / "views.png",
            view_titles(views[0], views[1]),
            title=f"{config.data.dataset} sample 0",
        )
        if tracker:
            tracker.log_metrics(
                {"zeroshot_acc": result.overall, "zeroshot_mean_class_acc": result.mean_per_class}, 0
            )
            tracker.log_metrics({f"class_acc/{k}": v for k, v in result.per_class.items() if v == v}, 0)
            tracker.log_artifact(out / "confusion.png")
            tracker.log_artifact(out / "views.png")
    return result
