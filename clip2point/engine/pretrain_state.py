"""Pre-training checkpoints: everything needed to continue a run exactly, in one atomically written file.

``state.pt`` holds plain tensors, numbers and strings (loadable with ``weights_only=True``): the trainable
module (depth encoder + balance ``s``), optimiser and scheduler states, the number of finished epochs, the
torch RNG states, the best validation result so far and the finished epoch's metrics. A run folder holds
one per kept epoch (``epoch_NNNN/state.pt``); :func:`read_newest` continues from the newest that reads back
completely, so one damaged file (a copy cut short) costs an epoch, not the run.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clip2point import storage
from clip2point.errors import InputError
from clip2point.paths import atomic_write

STATE_FILE = "state.pt"
STATE_KEYS = ("model", "optimizer", "scheduler", "epoch", "rng_cpu", "rng_cuda", "best", "metrics")
CHECKPOINT_DIR = re.compile(r"epoch_(\d+)(?:\.(\d+))?")  # a run's checkpoint folders: epoch_NNNN[.K]


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


def read_state(folder: str | Path, source: str | None = None) -> dict[str, Any]:
    """The payload of ``<folder>/state.pt`` (tensors on the CPU); :class:`InputError` naming the file (or
    ``source``, where it was downloaded from) if it cannot be read completely (cut short, not a checkpoint)."""
    path = Path(folder) / STATE_FILE
    source = source or str(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever a damaged file makes torch.load raise (zip, pickle, EOF, OS errors)
        detail = " ".join(str(exc).split(". ")[0].split())[:200] or type(exc).__name__
        raise InputError(f"cannot read pre-training checkpoint {source}: {detail}") from exc
    missing = [key for key in STATE_KEYS if key not in payload] if isinstance(payload, dict) else STATE_KEYS
    if missing:
        raise InputError(f"pre-training checkpoint {source} lacks {', '.join(missing)}")
    return payload


def _order(folder: str) -> tuple[int, int] | None:
    """``(epoch, K)`` of a checkpoint folder ``epoch_NNNN[.K]`` (K = 0 without a suffix), else None."""
    found = CHECKPOINT_DIR.fullmatch(folder)
    return (int(found[1]), int(found[2] or 0)) if found else None


def checkpoint_folder(epoch: int, taken: set[str]) -> str:
    """The folder name of ``epoch``'s checkpoint: ``epoch_NNNN``, or ``epoch_NNNN.K`` (the first K free)
    when ``taken`` (the run folder's names) has it already: a run resumed from before a damaged
    checkpoint re-runs that epoch, and Ray Train, which deletes old checkpoints by folder name, must not
    delete the new one with the old. The name is added to ``taken``."""
    name, k = f"epoch_{epoch:04d}", 0
    while name in taken:
        k += 1
        name = f"epoch_{epoch:04d}.{k}"
    taken.add(name)
    return name


def read_newest(run_dir: str, latest: str) -> tuple[dict[str, Any], str, list[str]]:
    """The newest checkpoint of the run folder ``run_dir`` (a storage location) that reads back completely,
    among the ``epoch_NNNN[.K]`` folders no newer than ``latest`` (Ray Train's latest checkpoint folder):
    ``(payload, its folder name, what was wrong with each damaged one tried first)``. Raises
    :class:`InputError` naming each damaged file if none reads back."""
    newest = _order(latest)
    kept = [n for n in storage.list_names(run_dir) if (order := _order(n)) is not None and order <= newest]
    damaged = []
    for folder in sorted(kept, key=_order, reverse=True):
        location = storage.join(run_dir, folder, STATE_FILE)
        with tempfile.TemporaryDirectory() as local:
            try:
                storage.download(location, Path(local) / STATE_FILE)
                return read_state(local, location), folder, damaged
            except (InputError, FileNotFoundError) as exc:
                damaged.append(str(exc))
    raise InputError(
        f"no checkpoint of {run_dir} reads back completely ({'; '.join(damaged) or 'none found'}); "
        "allowed: a run folder with at least one complete epoch_NNNN/state.pt, or a new --name"
    )


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
