"""Tiny random-init open_clip models for the tests (offline, CPU); fixtures re-exported by tests/conftest.py."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from clip2point.models import load_clip

EMBED = 32
WIDTH = 64
PATCH = 16
SIZE = 32


def tiny_config(quick_gelu: bool = False) -> dict:
    """A ViT (width 64, 2 layers, patch 16, image 32) and text tower (width 64, 2 layers, context 77)."""
    cfg = {
        "embed_dim": EMBED,
        "vision_cfg": {
            "image_size": SIZE,
            "layers": 2,
            "width": WIDTH,
            "patch_size": PATCH,
            "head_width": 32,
        },
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": WIDTH, "heads": 2, "layers": 2},
    }
    if quick_gelu:
        cfg["quick_gelu"] = True
    return cfg


@pytest.fixture(scope="session")
def tiny_name(tmp_path_factory) -> str:
    """Register the tiny configs (``C2PTiny`` with GELU, ``C2PTiny-quickgelu``) with open_clip."""
    folder = tmp_path_factory.mktemp("open_clip_configs")
    (folder / "C2PTiny.json").write_text(json.dumps(tiny_config()))
    (folder / "C2PTiny-quickgelu.json").write_text(json.dumps(tiny_config(quick_gelu=True)))
    open_clip.add_model_config(folder)
    return "C2PTiny"


@pytest.fixture(scope="session")
def tiny_bundle(tiny_name):
    torch.manual_seed(0)
    return load_clip(tiny_name, None)


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    """``(n, 3, SIZE, SIZE)`` normal noise."""
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
