"""Per-view features of a dataset: clouds -> depth maps -> a visual encoder, batched, without gradient."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from clip2point.errors import ConfigError, InputError
from clip2point.models.heads import encode_views
from clip2point.render.depth import DepthRenderer


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


PRECISIONS = ("fp32", "tf32", "bf16")


def compute_precision(device: torch.device | str, precision: str) -> str:
    """What the encoders really compute in for the config's ``precision`` on ``device``: ``"bf16"`` (autocast)
    for ``bf16`` on CUDA, ``"tf32"`` (float32 with TF32 matmuls) for ``tf32`` on CUDA, ``"float32"``
    otherwise (``fp32``, and every run on the CPU, where neither applies)."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"config key 'precision': {precision!r} is not allowed; expected one of 'fp32', 'tf32', 'bf16'"
        )
    return precision.replace("fp32", "float32") if torch.device(device).type == "cuda" else "float32"


def set_matmul_precision(device: torch.device | str, precision: str) -> None:
    """Let CUDA float32 matmuls (forward and backward) use TF32 exactly when ``precision`` is ``tf32`` on
    CUDA, as PyTorch 1.11, the authors', did by default (PyTorch >= 1.12 defaults to full float32).
    Process-wide; the :class:`~clip2point.engine.context.Experiment` of each process calls it."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = compute_precision(device, precision) == "tf32"


def autocast(device: torch.device | str, precision: str):
    """bf16 autocast on CUDA when ``precision`` is ``bf16``; a no-op context for ``fp32`` and on the CPU."""
    if compute_precision(device, precision) == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def extract_view_features(
    encoder: nn.Module,
    renderer: DepthRenderer,
    dataset: Dataset,
    views: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "features",
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render every sample of ``dataset`` at ``views`` and encode each view.

    ``dataset`` items are dicts with ``points (N, 3)`` and ``label``; ``views`` is ``(azim, elev, dist)``,
    each ``(V,)``. Returns features ``(M, V, C)`` float32 on the CPU and labels ``(M,)`` int64, in dataset
    order. The encoder runs in eval mode, in ``precision`` (:func:`autocast`). On a GPU the batches come
    from pinned memory without waiting and the features stay there until the end (one copy back), so the
    host never waits for the device between batches. Non-finite features (an encoder with NaN weights)
    raise :class:`~clip2point.errors.InputError` instead of counting as predictions.
    """
    device = torch.device(device)
    was_training = encoder.training
    encoder.eval()
    azim, elev, dist = (v.to(device) for v in views)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )  # fmt: skip
    features, labels = [], []
    buffer = None
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            points = batch["points"].to(device, non_blocking=True)
            shape = (points.shape[0], azim.shape[0], 3, renderer.image_size, renderer.image_size)
            if buffer is None or buffer.shape != shape:
                buffer = torch.empty(shape, device=device)
            images = renderer(points, azim, elev, dist, out=buffer)
            with autocast(device, precision):
                features.append(encode_views(encoder, images).float())
            labels.append(torch.as_tensor(batch["label"]).long())
    finally:
        encoder.train(was_training)
    features = torch.cat(features).cpu()
    broken = ~torch.isfinite(features).flatten(1).all(1)
    if broken.any():
        raise InputError(
            f"{desc}: the encoder gave non-finite features (NaN or inf) for {int(broken.sum())} of "
            f"{len(features)} samples (the first: sample {int(broken.int().argmax())}); its weights are "
            "not finite or it overflowed: check the encoder file, or the run that trained it"
        )
    return features, torch.cat(labels)
