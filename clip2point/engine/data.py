"""Datasets as a config describes them: absolute roots (Ray workers run elsewhere), seed, cache, alignment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from clip2point.config import ExperimentConfig
from clip2point.data import build_dataset
from clip2point.data.datasets import PointCloudDataset

ALIGNED_DATASETS = ("modelnet10", "modelnet40", "modelnet40_ply")


def dataset_from_config(
    config: ExperimentConfig, split: str, name: str | None = None, **extra
) -> PointCloudDataset:
    """Dataset ``name`` (default ``config.data.dataset``) of ``split`` under ``config.data.root`` (made
    absolute), with the config's point count, seed, sample cache, bad-file policy and, for ModelNet, the
    "rot" alignment. ``extra`` goes to the dataset class (e.g. ``image_size`` for pre-training pairs)."""
    name = name or config.data.dataset
    options = dict(seed=config.seed, on_error=config.data.on_error, **extra)
    if config.data.cache_dir is not None:
        options["cache_dir"] = Path(config.data.cache_dir).resolve()
    if name in ALIGNED_DATASETS:
        options["align"] = config.data.align
    return build_dataset(name, Path(config.data.root).resolve(), split, config.data.num_points, **options)


def ensure_toy_world(config: ExperimentConfig, size: str = "default", progress: bool = True) -> None:
    """Build the toy world under ``config.data.root`` if that is a toy root (its folder is named ``toy``)
    without a finished world (``toy_world.json``). Built in a sibling folder and renamed into place, so an
    interrupted build never leaves half a world. Call it in the driver, before any worker reads data."""
    root = Path(config.data.root).resolve()
    if root.name != "toy" or (root / "toy_world.json").exists():
        return
    from clip2point.toy import build_toy_world

    print(f"building the toy world in {root} (first run only)")
    staging = root.with_name(f".toy-building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    build_toy_world(staging, seed=0, size=size, progress=progress)
    if root.exists():  # an empty or unfinished folder from before
        shutil.rmtree(root)
    os.replace(staging, root)
