"""The authors' released checkpoints (docs/method.md section 6), imported into our modules and exported back.

- Pre-trained depth encoder ``best_eval.pth``: DataParallel keys ``module.point_model.<visual key>``
  (depth encoder), ``module.image_model.<visual key>`` (frozen CLIP copy), ``module.weights`` (balance s).
- Few-shot DPA ``best_test.pth``: ``pre_model.*`` (pre-trained depth encoder), ``ori_model.*`` (CLIP
  encoder), ``adapter1.*`` (pre-trained path aggregator), ``adapter2.*`` (CLIP path aggregator), both in
  the official aggregator layout: ``fusion_ratio``, ``global_f.0.bn.*`` (per-view BatchNorm),
  ``global_f.3.*`` (Linear V*C -> C), ``global_f.4.*`` (BatchNorm1d), ``global_f.7.*`` (Linear C -> C).

Visual keys are OpenAI's VisionTransformer names, which open_clip's VisionTransformer shares. Keys of
the official view selector (``selector.view_selector.views_{azim,elev,dist}``: the fixed cameras, ``(V,)``
buffers) carry no weights we need and are skipped on import; the DPA export writes them, because the
authors load a DPA file strictly. A file that does not fit raises :class:`InputError` listing missing /
unexpected / mis-shaped keys in the official names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clip2point.errors import ConfigError, InputError
from clip2point.models.adapters import GDPA
from clip2point.models.backbone import ClipBundle, load_clip
from clip2point.models.classifier import FewShotClassifier
from clip2point.models.state import (
    StateDict,
    check_state_dict,
    load_checked,
    load_module,
    read_metadata,
    read_state_dict,
    save_module,
)
from clip2point.render.cameras import Views, official_views
from clip2point.settings import AdapterSettings

DEPTH_PREFIX = "point_model."
IMAGE_PREFIX = "image_model."
BALANCE_KEY = "weights"
DATAPARALLEL = "module."
SKIPPED_PREFIXES = ("selector.",)
SELECTOR_VIEWS = "selector.view_selector.views_"  # + azim / elev / dist: the authors' fixed-camera buffers

# The adapter of the authors' DPA checkpoints: dual path, global aggregator in their form, plain average.
OFFICIAL_DPA = AdapterSettings(path="dual", aggregator="global", fusion="average", variant="official")

# our GlobalViewAggregator(variant="official") key prefix -> the official SimplifiedAdapter's
_AGGREGATOR_TO_OFFICIAL = {
    "view_weights": "fusion_ratio",
    "view_norm.": "global_f.0.bn.",
    "fc1.": "global_f.3.",
    "norm.": "global_f.4.",
    "fc2.": "global_f.7.",
}
# our FewShotClassifier key prefix -> the official DPA's
_DPA_TO_OFFICIAL = {
    "depth.encoder.": "pre_model.",
    "clip.encoder.": "ori_model.",
    "adapter.depth_adapter.": "adapter1.",
    "adapter.clip_adapter.": "adapter2.",
}


@dataclass(frozen=True)
class ImportReport:
    """What an import did: tensors loaded, file keys skipped, and the balance ``s`` (depth files only)."""

    source: str
    loaded: int
    skipped: tuple[str, ...]
    balance: float | None = None


def _rename(key: str, table: Mapping[str, str]) -> str | None:
    for ours, official in table.items():
        if key.startswith(ours):
            return official + key[len(ours) :]
    return None


def _read_official(path: str | os.PathLike) -> tuple[StateDict, tuple[str, ...]]:
    """The file's state dict with the DataParallel prefix removed, minus the skipped selector keys."""
    return _official_state(read_state_dict(path))


def _official_state(state: StateDict) -> tuple[StateDict, tuple[str, ...]]:
    """``state`` with the DataParallel prefix removed, minus the skipped selector keys (listed)."""
    if all(k.startswith(DATAPARALLEL) for k in state):
        state = {k[len(DATAPARALLEL) :]: v for k, v in state.items()}
    skipped = tuple(sorted(k for k in state if k.startswith(SKIPPED_PREFIXES)))
    return {k: v for k, v in state.items() if k not in skipped}, skipped


def _load_renamed(
    module: nn.Module, to_official: Mapping[str, str], state: StateDict, source: str, target: str
) -> None:
    """Check ``state`` (official names) against ``module`` seen through ``to_official`` and load it."""
    ours = module.state_dict()
    expected = {to_official[k]: v for k, v in ours.items()}
    check_state_dict(expected, state, source, target)
    module.load_state_dict({k: state[to_official[k]] for k in ours}, strict=True)


def load_official_depth(
    path: str | os.PathLike, depth_encoder: nn.Module, image_encoder: nn.Module | None = None
) -> ImportReport:
    """Load ``best_eval.pth``'s depth encoder into ``depth_encoder`` (an open_clip visual encoder).

    With ``image_encoder`` the file's ``image_model.*`` is loaded into it too; without, those keys are
    skipped. The balance ``s`` (``weights``) is returned in the report.
    """
    state, skipped = _read_official(path)
    if image_encoder is None:
        extra = tuple(sorted(k for k in state if k.startswith(IMAGE_PREFIX)))
        state = {k: v for k, v in state.items() if k not in extra}
        skipped += extra
    holder = nn.Module()
    holder.point_model = depth_encoder
    if image_encoder is not None:
        holder.image_model = image_encoder
    holder.weights = nn.Parameter(torch.ones(()), requires_grad=False)
    table = {k: k for k in holder.state_dict()}
    _load_renamed(holder, table, state, f"official depth checkpoint {path}", "the official CLIP2Point layout")
    return ImportReport(str(path), len(table), skipped, float(holder.weights))


def export_official_depth(
    depth_encoder: nn.Module, image_encoder: nn.Module, balance: float | torch.Tensor = 1.0
) -> StateDict:
    """Our encoders in the official ``best_eval.pth`` layout (``module.point_model.*`` etc., on CPU)."""
    state = {f"{DATAPARALLEL}{DEPTH_PREFIX}{k}": v for k, v in depth_encoder.state_dict().items()}
    state |= {f"{DATAPARALLEL}{IMAGE_PREFIX}{k}": v for k, v in image_encoder.state_dict().items()}
    state[f"{DATAPARALLEL}{BALANCE_KEY}"] = torch.as_tensor(balance, dtype=torch.float32).reshape(())
    return {k: v.detach().to("cpu").clone() for k, v in state.items()}


def _dpa_to_official(classifier: FewShotClassifier) -> dict[str, str]:
    """Our classifier keys -> the official DPA keys (aggregator keys renamed inside ``adapter1/2``)."""
    table = {}
    for key in classifier.state_dict():
        prefix = next((p for p in _DPA_TO_OFFICIAL if key.startswith(p)), None)
        rest = None if prefix is None else key[len(prefix) :]
        if prefix is not None and prefix.startswith("adapter."):
            rest = _rename(rest, _AGGREGATOR_TO_OFFICIAL)
        if rest is None:
            raise InputError(f"key {key} of our classifier has no place in the official DPA layout")
        table[key] = _DPA_TO_OFFICIAL[prefix] + rest
    return table


def load_official_dpa(path: str | os.PathLike, classifier: FewShotClassifier) -> ImportReport:
    """Load ``best_test.pth`` into ``classifier``: a dual-path, global, ``official``-variant, ``average``-
    fusion GDPA over a depth and a CLIP encoder (the official DPA)."""
    return _load_official_dpa_state(read_state_dict(path), classifier, str(path))


def _load_official_dpa_state(state: StateDict, classifier: FewShotClassifier, path: str) -> ImportReport:
    """Load the official DPA ``state`` (read from file ``path``) into ``classifier``."""
    if classifier.adapter.settings != OFFICIAL_DPA:
        raise InputError(
            f"the official DPA checkpoint needs a GDPA with {OFFICIAL_DPA}; got {classifier.adapter.settings}"
        )
    state, skipped = _official_state(state)
    table = _dpa_to_official(classifier)
    _load_renamed(classifier, table, state, f"official DPA checkpoint {path}", "the official DPA layout")
    return ImportReport(path, len(table), skipped)


def export_official_dpa(classifier: FewShotClassifier) -> StateDict:
    """Our official-form classifier in the ``best_test.pth`` layout (on CPU), the complete state dict of the
    authors' DPA module: with their view selector's buffers ``selector.view_selector.views_{azim,elev,dist}``,
    each ``(V,)`` float32 holding the official view set of the adapter's ``V`` (6 or 10) views, so that their
    strict ``load_state_dict`` accepts it."""
    table = _dpa_to_official(classifier)
    state = {table[k]: v.detach().to("cpu").clone() for k, v in classifier.state_dict().items()}
    views = official_views(classifier.adapter.depth_adapter.views)
    return state | {
        f"{SELECTOR_VIEWS}{name}": v.clone() for name, v in zip(Views._fields, views, strict=True)
    }


def convert_official(
    path: str | os.PathLike,
    out: str | os.PathLike,
    kind: str = "depth",
    model: str = "ViT-B-32",
    views: int = 10,
) -> tuple[ImportReport, Path]:
    """Convert an official file to our safetensors layout at ``out``.

    ``kind="depth"``: ``best_eval.pth`` -> the depth encoder's state dict (open_clip visual keys).
    ``kind="dpa"``: ``best_test.pth`` -> a :class:`FewShotClassifier` state dict (``views`` views, the
    official dual/global/average adapter). The official encoders are OpenAI CLIP ``model`` with QuickGELU;
    metadata records kind, model, views, quick_gelu, source and (depth) the balance ``s``.
    """
    if kind not in ("depth", "dpa"):
        raise ConfigError(f"import kind '{kind}' is not allowed; allowed: depth, dpa")
    bundle = load_clip(model, None, quick_gelu=True)
    metadata = {"kind": kind, "model": model, "quick_gelu": "true", "source": str(path)}
    if kind == "depth":
        target: nn.Module = bundle.depth_encoder()
        report = load_official_depth(path, target)
        metadata["balance"] = repr(report.balance)
    else:
        adapter = GDPA(views, bundle.embed_dim, OFFICIAL_DPA)
        target = FewShotClassifier(bundle.depth_encoder(), adapter, bundle.depth_encoder())
        report = load_official_dpa(path, target)
        metadata["views"] = str(views)
    return report, save_module(target, out, metadata)


def load_depth_encoder(bundle: ClipBundle, path: str | os.PathLike) -> nn.Module:
    """A depth encoder for ``bundle``'s backbone with the weights of ``path``: either our safetensors
    file (written by pre-training or ``import-official``) or the authors' ``best_eval.pth``, told apart
    by its keys. Returned frozen-ready in eval mode; errors list missing/unexpected/mis-shaped keys."""
    encoder = bundle.depth_encoder()
    keys = read_state_dict(path).keys()
    if any(k.removeprefix(DATAPARALLEL).startswith(DEPTH_PREFIX) for k in keys):
        load_official_depth(path, encoder)
    else:
        load_module(encoder, path)
    return encoder.eval()


# The first aggregator's view weights, (V,): in the authors' DPA file and in ours (FewShotClassifier keys)
_DPA_VIEW_KEYS = ("adapter1.fusion_ratio", "adapter.depth_adapter.view_weights")


def load_dpa(bundle: ClipBundle, path: str | os.PathLike) -> FewShotClassifier:
    """A Dual-Path Adapter classifier with the weights of ``path`` (in eval mode): the authors' few-shot
    ``best_test.pth`` (or a file :func:`export_official_dpa` wrote), or our conversion of it
    (``import-official --kind dpa``), told apart by their keys. Its encoders are copies of ``bundle``'s
    visual encoder, which must match the file's activation (the authors' and converted files use
    QuickGELU, i.e. OpenAI's ViT-B/32); its view count ``V`` is the file's (the adapter's
    ``classifier.adapter.depth_adapter.views``). Errors list missing / unexpected / mis-shaped keys."""
    state = read_state_dict(path)
    key = next((k for k in _DPA_VIEW_KEYS if k in state), None)
    if key is None:
        raise InputError(
            f"{path} is not a DPA checkpoint: it has neither adapter1.fusion_ratio (the authors' best_test.pth) "
            "nor adapter.depth_adapter.view_weights (import-official --kind dpa)"
        )
    quick_gelu = read_metadata(path).get("quick_gelu", "true").strip().lower() == "true"
    if quick_gelu != bundle.quick_gelu:
        raise ConfigError(
            f"the encoders of {path} use {'QuickGELU' if quick_gelu else 'GELU'}, but model.name="
            f"{bundle.name!r} with model.pretrained={bundle.pretrained!r} builds "
            f"{'QuickGELU' if bundle.quick_gelu else 'GELU'}; allowed: the backbone the file was trained "
            "from (ViT-B-32 with openai weights for the authors' files)"
        )
    adapter = GDPA(int(state[key].shape[0]), bundle.embed_dim, OFFICIAL_DPA)
    classifier = FewShotClassifier(bundle.depth_encoder(), adapter, bundle.depth_encoder())
    if key == _DPA_VIEW_KEYS[0]:
        _load_official_dpa_state(state, classifier, str(path))
    else:
        load_checked(classifier, state, f"DPA checkpoint {path}")
    return classifier.eval()
