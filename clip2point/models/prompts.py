"""Prompt features: ``"image of a {name}"`` per class, encoded by the CLIP text encoder, L2-normalised."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

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
