"""Datasets as a config describes them: absolute roots (Ray workers run elsewhere), seed, cache, alignment."""

from __future__ import annotations

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
