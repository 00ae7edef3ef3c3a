"""Everything between depth maps and logits: CLIP backbones, prompts, losses, adapters, checkpoints."""

from clip2point.models.adapters import GDPA, GlobalViewAggregator, InterViewAdapter
from clip2point.models.backbone import (
    ClipBundle,
    FrozenEncoder,
    TextEncoder,
    load_clip,
    toy_assets_dir,
    uses_quick_gelu,
    wants_quick_gelu,
)
from clip2point.models.checkpoints import (
    ImportReport,
    convert_official,
    export_official_depth,
    export_official_dpa,
    load_depth_encoder,
    load_dpa,
    load_official_depth,
    load_official_dpa,
)
from clip2point.models.classifier import FewShotClassifier
from clip2point.models.heads import cosine_logits, encode_views, zero_shot_logits
from clip2point.models.losses import PretrainLoss, PretrainObjective, nt_xent
from clip2point.models.prompts import encode_prompts, prompt_texts
from clip2point.models.state import load_module, read_state_dict, save_module, save_safetensors, save_torch
from clip2point.settings import AdapterSettings

__all__ = [
    "GDPA",
    "AdapterSettings",
    "ClipBundle",
    "FewShotClassifier",
    "FrozenEncoder",
    "GlobalViewAggregator",
    "ImportReport",
    "InterViewAdapter",
    "PretrainLoss",
    "PretrainObjective",
    "TextEncoder",
    "convert_official",
    "cosine_logits",
    "encode_prompts",
    "encode_views",
    "export_official_depth",
    "export_official_dpa",
    "load_clip",
    "load_depth_encoder",
    "load_dpa",
    "load_module",
    "load_official_depth",
    "load_official_dpa",
    "nt_xent",
    "prompt_texts",
    "read_state_dict",
    "save_module",
    "save_safetensors",
    "save_torch",
    "toy_assets_dir",
    "uses_quick_gelu",
    "wants_quick_gelu",
    "zero_shot_logits",
]
