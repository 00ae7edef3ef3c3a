"""The tests' tiny open_clip model (offline, CPU): its config, the session fixtures (re-exported by
tests/conftest.py) that register it by name or write it once, and :func:`write_tiny_clip` for runs in other
processes."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

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


def write_tiny_clip(folder: Path, seed: int = 0) -> str:
    """The tiny model with seeded random weights as an open_clip ``local-dir:`` folder; returns the model
    name to put in ``model.name`` (with ``model.pretrained: null``). Any process can load it: Ray workers,
    sweep trials, a CLI run."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / "open_clip_model.safetensors")
    return f"local-dir:{folder}"


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> str:
    """:func:`write_tiny_clip` once per session: the ``model.name`` of the tiny model (seed 0) for runs in
    other processes."""
    return write_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


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
