"""Prompt features: ``"image of a {name}"`` per class, encoded by the CLIP text encoder, L2-normalised."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clip2point.errors import InputError

TEMPLATE = "image of a {}"


def prompt_texts(class_names: Sequence[str]) -> list[str]:
    """The prompt of each class, underscores read as spaces: ``night_stand`` -> ``image of a night stand``."""
    if not class_names:
        raise InputError("class list is empty; need at least one class name for prompts")
    bad = [n for n in class_names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise InputError(f"class names must be non-empty strings; got {bad!r}")
    return [TEMPLATE.format(name.replace("_", " ")) for name in class_names]


def encode_prompts(
    text_encoder: Callable[[list[str]], torch.Tensor], class_names: Sequence[str]
) -> torch.Tensor:
    """Normalised prompt features ``(K, C)`` for K class names (no gradient)."""
    with torch.no_grad():
        return F.normalize(text_encoder(prompt_texts(class_names)).float(), dim=-1)


def _weights_version(module: nn.Module) -> tuple[int, ...]:
    """A tuple that changes whenever any parameter or buffer of ``module`` is modified in place."""
    return tuple(t._version for t in (*module.parameters(), *module.buffers()))


class PromptCache:
    """Prompt features cached per (text encoder, class list).

    Entries are held per encoder object in a weak mapping, so they vanish with the encoder and never
    leak to another model; an entry is recomputed when the encoder's weights change in place (the
    tensors' version counters move) or when it is moved to another device.
    """

    def __init__(self) -> None:
        self._entries: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()

    def features(self, text_encoder: nn.Module, class_names: Sequence[str]) -> torch.Tensor:
        """Normalised prompt features ``(K, C)`` of ``class_names`` under ``text_encoder``."""
        per_model = self._entries.setdefault(text_encoder, {})
        names = tuple(class_names)
        stamp = (_weights_version(text_encoder), next(text_encoder.parameters()).device)
        cached = per_model.get(names)
        if cached is None or cached[0] != stamp:
            cached = per_model[names] = (stamp, encode_prompts(text_encoder, names))
        return cached[1]
