"""A loaded config made ready to run, in the driver, before any worker starts: :func:`prepare`.

Every verb, sweep and the reproduction call it once on the config they loaded (and pass the result on to
Ray workers and Tune trials): paths absolute, storage and tracking URI resolved (:func:`resolve_paths`),
the run storage probed where the command writes there, and the toy world built where the config reads it
(:func:`ensure_toy_world`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from clip2point import storage
from clip2point.config import ExperimentConfig
from clip2point.paths import is_remote, is_uri, resolve_path, storage_root
from clip2point.schema import with_overrides
from clip2point.tracking import resolve_tracking_uri


def prepare(
    config: ExperimentConfig, *, probe_storage: bool = False, toy_size: str = "default", progress: bool = True
) -> ExperimentConfig:
    """``config`` ready to run: :func:`resolve_paths`, then (``probe_storage``: for commands that write runs
    or sweeps there) :func:`~clip2point.storage.check_storage` on ``storage``, failing before anything
    starts, then :func:`ensure_toy_world` (of ``toy_size``, with a ``progress`` bar). Idempotent."""
    config = resolve_paths(config)
    if probe_storage:
        storage.check_storage(config.storage)
    ensure_toy_world(config, toy_size, progress)
    return config


def resolve_paths(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` as every process must see it (Ray workers run in other directories, on other machines):
    each path absolute (relative ones taken from the project root, :mod:`clip2point.paths`; a depth encoder
    given as a storage or MLflow URI stays as it is), ``storage`` resolved
    (:func:`~clip2point.paths.storage_root`) and ``tracking.uri`` resolved
    (:func:`~clip2point.tracking.resolve_tracking_uri`). Idempotent."""

    def absolute(path: str | None) -> str | None:
        return None if path is None else str(resolve_path(path))

    encoder, pack = config.model.depth_encoder, config.pretrain.data

    return with_overrides(
        config,
        {
            "data.root": absolute(config.data.root),
            "data.cache_dir": absolute(config.data.cache_dir),
            "model.depth_encoder": encoder if encoder and is_remote(encoder) else absolute(encoder),
            "fewshot.feature_cache": absolute(config.fewshot.feature_cache),
            "sweep.results_dir": absolute(config.sweep.results_dir),
            "pretrain.data": pack if pack is None or is_uri(pack) else absolute(pack),
            "storage": storage_root(config.storage),
            "tracking.uri": resolve_tracking_uri(config.tracking.uri),
        },
    )


def ensure_toy_world(config: ExperimentConfig, size: str = "default", progress: bool = True) -> None:
    """Build the toy world under ``data.root`` if that is a toy root (:func:`is_toy_root`) without
    a finished world of this version of the code (``toy_world.json``; an older world is rebuilt). Built in a
    sibling folder and renamed into place, so an interrupted build never leaves half a world. Call it in
    the driver, before any worker reads data."""
    from clip2point.toy.world import WORLD_VERSION, build_toy_world

    root = resolve_path(config.data.root)
    if not is_toy_root(root) or is_current_toy_world(root):
        return
    print(f"building the toy world (version {WORLD_VERSION}) in {root}")
    staging = root.with_name(f".toy-building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    build_toy_world(staging, seed=0, size=size, progress=progress)
    if root.exists():  # an empty or unfinished folder from before
        shutil.rmtree(root)
    os.replace(staging, root)


def is_toy_root(root: str | Path) -> bool:
    """Whether the data root ``root`` is a toy root: a folder named ``toy``, where the toy world lives."""
    return Path(root).name == "toy"


def is_current_toy_world(root: Path) -> bool:
    """Whether ``root`` holds a finished toy world of this version of the code: its ``toy_world.json``
    records :data:`~clip2point.toy.world.WORLD_VERSION` (an unreadable one, or one from before versions,
    does not)."""
    from clip2point.toy.world import WORLD_VERSION

    try:
        return json.loads((root / "toy_world.json").read_text()).get("version") == WORLD_VERSION
    except (OSError, ValueError):
        return False
