"""Tiny pre-training worlds for the tests: ShapeNet55 pairs and a ModelNet10 test set."""

from __future__ import annotations

from pathlib import Path

from clip2point.config import load_config
from clip2point.data import MODELNET10, SHAPENET55_SYNSET_IDS
from tests.data.data_writers import make_modelnet, make_shapenet
from tests.tiny_clip import write_tiny_clip


def write_world(root: Path) -> None:
    """ShapeNet55 train (16 models of 4 synsets) / test (8) with renders, ModelNet10 test (2 boxes x 3)."""
    synsets = SHAPENET55_SYNSET_IDS[:4]
    make_shapenet(root, [(synsets[i % 4], f"m{i:02d}") for i in range(16)], split="train", points=96)
    make_shapenet(root, [(synsets[i % 4], f"t{i:02d}") for i in range(8)], split="test", points=96)
    make_modelnet(root, MODELNET10, splits=("test",), per_class={c: 2 for c in MODELNET10[:3]})


def tiny_config_for(tmp_path: Path, **overrides):
    """An ExperimentConfig for the tiny world: 64 points, batch 4 (4 iterations per epoch), 6 views."""
    root = tmp_path / "world"
    if not root.exists():
        write_world(root)
    model = (
        write_tiny_clip(tmp_path / "clip")
        if not (tmp_path / "clip").exists()
        else f"local-dir:{tmp_path / 'clip'}"
    )
    base = {
        "model.name": model, "model.pretrained": None, "data.root": str(root), "data.num_points": 64,
        "render.views": 6, "pretrain.batch_size": 4, "pretrain.epochs": 2, "pretrain.lr": 1e-3,
        "pretrain.restart_epochs": 1, "pretrain.cpus_per_worker": 1, "pretrain.max_failures": 0,
        "storage": str(tmp_path / "runs"), "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }  # fmt: skip
    return load_config(overrides=base | overrides)
