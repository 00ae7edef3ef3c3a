"""Prompt features: ``"image of a {name}"`` per class, encoded by the CLIP text encoder, L2-normalised.

Class names become prompt words in one of two styles (``data.prompts``): ``spaces`` reads every underscore
as a space (``night_stand`` -> ``image of a night stand``); ``official`` spells the names as the authors'
scripts do (:func:`~clip2point.data.classnames.official_prompt_names`: their ModelNet10 list keeps
``night_stand``, every other list they use has spaces).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from clip2point.data.classnames import official_prompt_names
from clip2point.errors import InputError

TEMPLATE = "image of a {}"
PROMPT_STYLES = ("spaces", "official")


def prompt_texts(class_names: Sequence[str], style: str = "spaces") -> list[str]:
    """The prompt of each class in ``style`` (module docstring): ``night_stand`` -> ``image of a night stand``
    (``spaces``; in ModelNet10's list under ``official``: ``image of a night_stand``)."""
    if not class_names:
        raise InputError("class list is empty; need at least one class name for prompts")
    bad = [n for n in class_names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise InputError(f"class names must be non-empty strings; got {bad!r}")
    if style not in PROMPT_STYLES:
        raise InputError(f"prompt style {style!r} is not allowed; use one of {', '.join(PROMPT_STYLES)}")
    names = (
        official_prompt_names(class_names)
        if style == "official"
        else [n.replace("_", " ") for n in class_names]
    )
    return [TEMPLATE.format(name) for name in names]


def encode_prompts(
    text_encoder: Callable[[list[str]], torch.Tensor], class_names: Sequence[str], style: str = "spaces"
) -> torch.Tensor:
    """Normalised prompt features ``(K, C)`` for K class names (no gradient), prompts in ``style``."""
    with torch.no_grad():
        return F.normalize(text_encoder(prompt_texts(class_names, style)).float(), dim=-1)
