"""Datasets as a config describes them: absolute roots (Ray workers run elsewhere), seed, cache, alignment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from clip2point.config import ExperimentConfig, with_overrides
from clip2point.data import build_dataset
from clip2point.data.datasets import PointCloudDataset
from clip2point.tracking import project_root, resolve_tracking_uri

ALIGNED_DATASETS = ("modelnet10", "modelnet40", "modelnet40_ply")


def absolute_paths(config: ExperimentConfig, cwd: Path | None = None) -> ExperimentConfig:
    """``config`` as Ray workers (other working directories, other machines) must see it: ``data.root``,
    ``data.cache_dir``, ``fewshot.depth_encoder`` and ``pretrain.storage`` absolute (relative to ``cwd``,
    default the current directory; ``pretrain.storage`` None becomes ``<project root>/runs/pretrain``)
    and ``tracking.uri`` resolved (:func:`clip2point.tracking.resolve_tracking_uri`)."""
    cwd = (cwd or Path.cwd()).resolve()

    def absolute(path: str | None) -> str | None:
        return None if path is None else str((cwd / Path(path).expanduser()).resolve())

    storage = config.pretrain.storage
    return with_overrides(
        config,
        {
            "data.root": absolute(config.data.root),
            "data.cache_dir": absolute(config.data.cache_dir),
            "fewshot.depth_encoder": absolute(config.fewshot.depth_encoder),
            "pretrain.storage": absolute(storage) if storage else str(project_root() / "runs" / "pretrain"),
            "tracking.uri": resolve_tracking_uri(config.tracking.uri),
        },
    )


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
