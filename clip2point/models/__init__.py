"""Everything between depth maps and logits: CLIP backbones, prompts, losses, adapters, checkpoints.

The names below are imported from their modules on first use (PEP 562), so that a command which needs only
:class:`~clip2point.models.adapters.AdapterSettings` (every config does) does not import open_clip.
"""

from __future__ import annotations

from importlib import import_module

_HOMES = {
    "GDPA": "adapters",
    "AdapterSettings": "adapters",
    "ClipBundle": "backbone",
    "FewShotClassifier": "classifier",
    "FrozenEncoder": "backbone",
    "GlobalViewAggregator": "adapters",
    "ImportReport": "checkpoints",
    "InterViewAdapter": "adapters",
    "PretrainLoss": "losses",
    "PretrainObjective": "losses",
    "TextEncoder": "backbone",
    "convert_official": "checkpoints",
    "cosine_logits": "heads",
    "encode_prompts": "prompts",
    "encode_views": "heads",
    "export_official_depth": "checkpoints",
    "export_official_dpa": "checkpoints",
    "load_clip": "backbone",
    "load_depth_encoder": "checkpoints",
    "load_dpa": "checkpoints",
    "load_module": "state",
    "load_official_depth": "checkpoints",
    "load_official_dpa": "checkpoints",
    "nt_xent": "losses",
    "prompt_texts": "prompts",
    "read_state_dict": "state",
    "save_module": "state",
    "save_safetensors": "state",
    "save_torch": "state",
    "toy_assets_dir": "backbone",
    "uses_quick_gelu": "backbone",
    "wants_quick_gelu": "backbone",
    "zero_shot_logits": "heads",
}
__all__ = list(_HOMES)


def __getattr__(name: str):
    """``clip2point.models.<name>``: imported from its module the first time it is asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
