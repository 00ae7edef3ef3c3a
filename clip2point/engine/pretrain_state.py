"""Pre-training checkpoints: everything needed to continue a run exactly, in one atomically written file.

``state.pt`` holds plain tensors, numbers and strings (loadable with ``weights_only=True``): the trainable
module (depth encoder + balance ``s``), optimiser and scheduler states, the number of finished epochs, the
torch RNG states, the best validation result so far and the finished epoch's metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from clip2point.errors import InputError
from clip2point.paths import atomic_write

STATE_FILE = "state.pt"


def write_state(
    folder: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    best: dict[str, float],
    metrics: dict[str, float],
) -> Path:
    """Write ``<folder>/state.pt`` (atomically: a temp file renamed into place) and return its path."""
    payload = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": int(epoch),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "best": {k: float(v) for k, v in best.items()},
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    return atomic_write(Path(folder) / STATE_FILE, lambda tmp: torch.save(payload, tmp))


def read_state(folder: str | Path) -> dict[str, Any]:
    """The payload of ``<folder>/state.pt`` (tensors on the CPU)."""
    path = Path(folder) / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise InputError(f"cannot read pre-training checkpoint {path}: {exc}") from exc


def restore_state(
    payload: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[int, dict[str, float], dict[str, float]]:
    """Load ``payload`` into ``model``, ``optimizer``, ``scheduler`` and the RNGs; return (finished epochs,
    best-so-far, that epoch's metrics)."""
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng_cpu"])
    if payload["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng_cuda"])
    return payload["epoch"], payload["best"], payload["metrics"]
