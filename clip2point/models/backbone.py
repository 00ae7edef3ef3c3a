"""CLIP backbones from open_clip: the visual encoder, the text encoder and its tokenizer.

:func:`load_clip` builds any open_clip model name with weights from an open_clip tag (downloaded),
a local weights file, the bundled toy model (``"toy"``) or none (random init). OpenAI-trained weights
need the QuickGELU activation; :func:`wants_quick_gelu` decides it from the model config, the tag, the
file's metadata or its path, and :func:`load_clip` checks that the built model really uses it.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.transformer import QuickGELU
from torch import nn

from clip2point.errors import ConfigError, InputError
from clip2point.logs import quiet_logger
from clip2point.models.state import load_checked, read_metadata, read_state_dict, strip_prefix
from clip2point.render.depth import ImageNorm

TOY = "toy"
_SCHEMAS = ("hf-hub:", "local-dir:")


def toy_assets_dir() -> Path:
    """The folder of the bundled toy CLIP: ``<name>.json`` (open_clip config) and ``<name>.safetensors``."""
    return Path(__file__).resolve().parent.parent / "assets" / "toy_clip"


class TextEncoder(nn.Module):
    """Strings -> CLIP text features ``(K, C)`` (not normalised), tokenising with the model's tokenizer."""

    def __init__(self, clip_model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor]):
        super().__init__()
        clip_model.visual = nn.Identity()  # the visual tower lives in ClipBundle.visual
        self.clip = clip_model
        self.tokenizer = tokenizer

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        device = next(self.clip.parameters()).device
        return self.clip.encode_text(self.tokenizer(list(texts)).to(device))


class FrozenEncoder(nn.Module):
    """A frozen encoder: no parameter needs gradients, always in eval mode, runs under ``no_grad``."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenEncoder:
        """Keep the wrapped encoder in eval mode whatever the parent asks."""
        self.training = mode
        self.encoder.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encoder(images)


@dataclass
class ClipBundle:
    """A loaded CLIP: ``visual`` maps images ``(M, 3, S, S)`` to features ``(M, C)``; ``text`` maps a list of
    K strings to features ``(K, C)``; ``image_size`` is S, ``embed_dim`` is C and ``norm`` the mean/std
    its images (RGB renders and depth maps alike) are standardised with, as open_clip configures the model
    and its weights (OpenAI's values for the paper's ViT-B/32)."""

    name: str
    pretrained: str | None
    visual: nn.Module
    text: TextEncoder
    tokenizer: Callable[[list[str]], torch.Tensor]
    image_size: int
    embed_dim: int
    quick_gelu: bool
    norm: ImageNorm

    def depth_encoder(self) -> nn.Module:
        """A trainable copy of the visual encoder (the depth encoder ``E_d`` starts from CLIP)."""
        return copy.deepcopy(self.visual).requires_grad_(True).train()

    def image_encoder(self) -> FrozenEncoder:
        """The visual encoder frozen (``E_i``, and the CLIP path of GDPA)."""
        return FrozenEncoder(self.visual)


def uses_quick_gelu(model: nn.Module) -> bool:
    """Whether any activation in ``model`` is open_clip's QuickGELU (``x * sigmoid(1.702 x)``)."""
    return any(isinstance(m, QuickGELU) for m in model.modules())


def wants_quick_gelu(name: str, pretrained: str | None, model_cfg: dict) -> bool:
    """Whether weights ``pretrained`` for model ``name`` were trained with QuickGELU.

    In order: the model config (``-quickgelu`` names) says so; a local file's safetensors metadata
    ``quick_gelu`` (``"true"``/``"false"``) decides; a local file whose path mentions ``openai`` (as the
    Hugging Face cache path of OpenAI weights does) needs it; an open_clip tag needs it when its
    pretrained config says so or the tag is an ``openai`` one. Random init and ``"toy"`` follow the config.
    """
    if model_cfg.get("quick_gelu", False):
        return True
    if pretrained is None or pretrained == TOY:
        return False
    if os.path.isfile(pretrained):
        flag = read_metadata(pretrained).get("quick_gelu")
        if flag is not None:
            return flag.strip().lower() == "true"
        return "openai" in str(pretrained).lower()
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    return bool(tag_cfg.get("quick_gelu", False)) or pretrained.lower().startswith("openai")


def _register_toy(name: str, assets: Path) -> Path:
    """Make ``name`` resolve in open_clip to ``assets/<name>.json``; return the weights path."""
    config_path, weights_path = assets / f"{name}.json", assets / f"{name}.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise InputError(
            f"toy CLIP '{name}' not found: expected {config_path} and {weights_path}. "
            "Train them with `python -m clip2point.toy.train_clip --out <folder>`."
        )
    try:
        cfg = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"toy CLIP config {config_path} is not valid JSON: {exc}") from exc
    if not all(key in cfg for key in ("embed_dim", "vision_cfg", "text_cfg")):
        raise InputError(f"toy CLIP config {config_path} needs the keys embed_dim, vision_cfg and text_cfg")
    if open_clip.get_model_config(name) != cfg:
        open_clip.add_model_config(config_path)
    return weights_path


def _model_config(name: str) -> dict:
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ConfigError(
            f"model.name '{name}' is not an open_clip model; allowed: one of open_clip.list_models() "
            f"(e.g. ViT-B-32, ViT-B-16, RN50), 'hf-hub:<repo>' or 'local-dir:<path>'"
        )
    return cfg


def _create(name: str, pretrained: str | None, quick_gelu: bool, weights: Path | None) -> nn.Module:
    """Build the open_clip model; load ``weights`` (a local file) or download tag ``pretrained``."""
    if weights is None and pretrained is not None and not name.startswith(_SCHEMAS):
        if not open_clip.is_pretrained_cfg(name, pretrained):
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ConfigError(
                f"model.pretrained '{pretrained}' is neither a file nor an open_clip tag of {name}; "
                f"allowed: a weights file, 'toy', None, or one of {tags}"
            )
        return open_clip.create_model(name, pretrained, force_quick_gelu=quick_gelu)
    if weights is not None:
        # open_clip warns that the model is randomly initialised; its weights are loaded right below.
        with quiet_logger():  # open_clip logs its warnings to the root logger
            model = open_clip.create_model(name, None, force_quick_gelu=quick_gelu)
        state = read_state_dict(weights)
        if all(k.startswith("module.") for k in state):
            state = strip_prefix(state, "module.")
        load_checked(model, state, f"weights file {weights}")
        return model
    return open_clip.create_model(name, None, force_quick_gelu=quick_gelu)


def load_clip(
    name: str,
    pretrained: str | None,
    device: str | torch.device = "cpu",
    *,
    quick_gelu: bool | None = None,
    toy_dir: str | os.PathLike | None = None,
) -> ClipBundle:
    """Build open_clip model ``name`` with weights ``pretrained`` and split it into a :class:`ClipBundle`.

    ``pretrained``: an open_clip tag such as ``"openai"`` (downloads), a local ``.pt/.pth/.bin`` or
    ``.safetensors`` file with an open_clip/OpenAI CLIP state dict, ``None`` (random init) or ``"toy"``
    (``<toy_dir>/<name>.json`` and ``.safetensors``; ``toy_dir`` defaults to :func:`toy_assets_dir`).
    ``quick_gelu`` overrides :func:`wants_quick_gelu`. The text encoder comes back frozen and in eval mode.
    """
    weights = None
    if pretrained == TOY:
        weights = _register_toy(name, Path(toy_dir) if toy_dir is not None else toy_assets_dir())
    elif pretrained is not None and os.path.isfile(pretrained):
        weights = Path(pretrained)
    model_cfg = _model_config(name)
    need = wants_quick_gelu(name, pretrained, model_cfg) if quick_gelu is None else quick_gelu
    model = _create(name, pretrained, need, weights)
    if uses_quick_gelu(model) != need:
        raise ConfigError(
            f"weights '{pretrained}' need {'QuickGELU' if need else 'GELU'} but open_clip model '{name}' "
            f"was built with {'GELU' if need else 'QuickGELU'}; pass quick_gelu= or pick the matching name"
        )
    model = model.to(device)
    size = model.visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    if size[0] != size[1]:
        raise ConfigError(f"model.name '{name}' has non-square input {size}; only square inputs work")
    visual = model.visual.eval()
    tokenizer = open_clip.get_tokenizer(name)
    preprocess = open_clip.get_model_preprocess_cfg(model)
    norm = ImageNorm(tuple(preprocess["mean"]), tuple(preprocess["std"]))
    text = TextEncoder(model, tokenizer).requires_grad_(False).eval()
    return ClipBundle(
        name=name,
        pretrained=pretrained,
        visual=visual,
        text=text,
        tokenizer=tokenizer,
        image_size=int(size[0]),
        embed_dim=int(model_cfg["embed_dim"]),
        quick_gelu=need,
        norm=norm,
    )
