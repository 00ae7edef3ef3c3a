"""State dicts on disk: safe reading, checked loading into modules, atomic safetensors writing.

Every reader here uses ``torch.load(..., weights_only=True)`` (or safetensors), so a weights file can
never run code; every failure raises :class:`~clip2point.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from clip2point.errors import InputError
from clip2point.paths import atomic_write

StateDict = dict[str, torch.Tensor]

_MAX_LISTED = 12  # keys listed per category in an error message


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Read a flat ``{key: tensor}`` mapping from ``.safetensors`` or a torch file (``.pt/.pth/.bin``).

    A torch file may hold the mapping itself or ``{"state_dict": mapping}``. Tensors come back on CPU;
    a floating tensor with a NaN or inf is refused (such weights would only make NaN features).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            obj = load_file(path, device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise InputError(
            f"cannot read weights file {path}: {_reason(exc)}. Expected a safetensors file or a torch state "
            "dict (loaded with weights_only=True, so pickled objects and TorchScript archives are refused)"
        ) from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise InputError(f"weights file {path} holds no non-empty state dict (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"weights file {path} has non-tensor entries: {_listing(bad)}")
    broken = [k for k, v in obj.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise InputError(f"weights file {path} has non-finite values (NaN or inf) in {_listing(broken)}")
    return dict(obj)


def _reason(exc: Exception) -> str:
    """The informative line of a loader error (torch's weights_only errors span many lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in lines if "Unsupported" in line), lines[0] if lines else repr(exc))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (empty for other formats or none stored)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    with safe_open(path, framework="pt") as handle:
        return dict(handle.metadata() or {})


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """The entries whose key starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else "")


def check_state_dict(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str, target: str
) -> None:
    """Raise :class:`InputError` naming ``source`` and ``target`` unless ``state`` has exactly the keys of
    ``expected`` with the same shapes; the message lists missing, unexpected and mis-shaped keys."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k} (file {tuple(state[k].shape)}, expected {tuple(expected[k].shape)})"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    problems = [
        f"{label}: {_listing(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if keys
    ]
    if problems:
        raise InputError(f"{source} does not fit {target}: " + "; ".join(problems))


def load_checked(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` strictly after :func:`check_state_dict` (dtype cast to the module's)."""
    check_state_dict(module.state_dict(), state, source, type(module).__name__)
    module.load_state_dict(state, strict=True)


def _cpu_copy(state: Mapping[str, torch.Tensor]) -> StateDict:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_safetensors(
    state: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``state`` to ``path`` as safetensors with string ``metadata``, atomically."""
    tensors = _cpu_copy(state)
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=dict(metadata or {})))


def save_torch(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """``torch.save`` a plain tensor dict (readable with ``weights_only=True``), atomically."""
    tensors = _cpu_copy(state)
    return atomic_write(path, lambda tmp: torch.save(tensors, tmp))


def save_module(
    module: nn.Module, path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> Path:
    """Save ``module.state_dict()`` as safetensors (atomic) with string ``metadata``."""
    return save_safetensors(module.state_dict(), path, metadata)


def load_module(module: nn.Module, path: str | os.PathLike) -> dict[str, str]:
    """Load a file written by :func:`save_module` into ``module`` (checked); return its metadata."""
    load_checked(module, read_state_dict(path), f"weights file {path}")
    return read_metadata(path)
