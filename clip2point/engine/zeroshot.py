"""Zero-shot classification (docs/method.md section 3): mean over views of per-view cosine logits with the prompts."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from clip2point.engine.context import Experiment
from clip2point.engine.features import autocast, extract_view_features
from clip2point.engine.metrics import Accuracy, accuracy, save_confusion_png
from clip2point.models.heads import cosine_logits, zero_shot_logits
from clip2point.registry import PRETRAIN_PAIRS
from clip2point.render import DepthRenderer, Views
from clip2point.render.preview import depth_gray, save_view_grid, view_titles
from clip2point.tracking import Tracker


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
    views: Views,
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    progress: bool = True,
    precision: str = "fp32",
) -> Accuracy:
    """Zero-shot accuracy of ``encoder`` (CLIP's visual encoder or a pre-trained depth encoder) on
    ``dataset`` rendered at ``views`` (each ``(V,)``), with prompt features ``text_features (K, C)``; the
    encoder computes in ``precision`` (:func:`~clip2point.engine.features.autocast`)."""
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
        precision=precision,
    )
    return zero_shot_accuracy(features, labels, text_features, class_names)


def run_zero_shot(
    experiment: Experiment,
    *,
    split: str = "test",
    out_dir: str | Path | None = None,
    track: bool = True,
    progress: bool = True,
) -> Accuracy:
    """The ``clip2point zeroshot`` experiment: the config's dataset rendered as ``render`` says, encoded by
    the experiment's depth encoder (``model.depth_encoder``, or CLIP's visual encoder), scored against the
    class prompts. Writes ``confusion.png`` and ``views.png`` (the first sample's depth maps) to ``out_dir``
    (default ``<project>/runs/zeroshot/<dataset>``) and, with ``track``, logs params, accuracy, per-class
    accuracy and both pictures to MLflow."""
    config = experiment.config
    dataset = experiment.dataset(split)
    out = experiment.output_dir("zeroshot", out_dir)
    encoder_label = experiment.depth_encoder_label
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
        result = evaluate_zero_shot(
            experiment.depth_encoder, experiment.text_features(dataset.class_names), dataset.class_names,
            dataset, experiment.renderer, experiment.views, device=experiment.device, progress=progress,
            precision=config.precision,
        )  # fmt: skip
        save_confusion_png(
            result, out / "confusion.png", title=f"{config.data.dataset} {split}, {encoder_label}"
        )
        sample = dataset[0]["points"].to(experiment.device)
        save_view_grid(
            [(config.render.label(), depth_gray(experiment.renderer, sample, experiment.views))],
            out / "views.png",
            view_titles(experiment.views),
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


@torch.no_grad()
def render_check(
    experiment: Experiment, *, batch_size: int = 32, progress: bool = True
) -> dict[str, Accuracy]:
    """The pre-training data check: zero-shot accuracy of CLIP's visual encoder on the pre-training
    validation pairs (``shapenet55_pretrain`` test split), once on each pair's RGB render and once on the
    depth map of its cloud rendered at the same official view (one view per model, drawn by the dataset's
    seed). Returns ``{"rgb": Accuracy, "depth": Accuracy}``: how far depth maps are from CLIP's images
    before any pre-training (the paper: 54.21% vs 19.98% on ShapeNet)."""
    pairs = experiment.dataset("test", PRETRAIN_PAIRS)
    text = experiment.text_features(pairs.class_names)
    encoder, device = experiment.bundle.visual, experiment.device
    loader = DataLoader(pairs, batch_size=batch_size, shuffle=False)
    logits: dict[str, list[torch.Tensor]] = {"rgb": [], "depth": []}
    labels = []
    with autocast(device, experiment.config.precision):
        for batch in tqdm(loader, desc="render check", disable=not progress, leave=False):
            views = [batch[k].float().to(device)[:, None] for k in ("azim", "elev", "dist")]  # (B, 1) each
            depth = experiment.renderer(batch["points"].to(device), *views)  # (B, 1, 3, S, S)
            for key, images in (("rgb", batch["image"].to(device)), ("depth", depth[:, 0])):
                logits[key].append(cosine_logits(encoder(images).float(), text).cpu())
            labels.append(batch["label"])
    truth = torch.cat(labels)
    return {key: accuracy(torch.cat(parts), truth, pairs.class_names) for key, parts in logits.items()}
